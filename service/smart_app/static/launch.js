// SMART App Launch 2.x, EHR launch: the server already checked iss + launch (else it refused this page).
"use strict";
(async function launch() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("api/config", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error("configuration not available (HTTP " + response.status + ")");
    const cfg = await response.json();
    await window.FHIR.oauth2.authorize({
      clientId: cfg.clientId,
      scope: cfg.scope,
      redirectUri: cfg.redirectUri,
      pkceMode: "required",
    });
  } catch (err) {
    status.className = "refusal";
    status.setAttribute("role", "alert");
    status.textContent = "The launch failed: " + (err && err.message ? err.message : String(err)) +
      ". Nothing was read or written.";
  }
})();

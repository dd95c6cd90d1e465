// The SMART app (docs/smart-app.md): read what the EHR has, show one form per ask, write Observations
// in the codes spinecds reads, for the patient in context only, as the launching user.
"use strict";

const LOCAL = "https://fhir.spinecds.org/CodeSystem/spinecds-local";
const UCUM = "http://unitsofmeasure.org";
const CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category";
const COUNTED = ["final", "amended", "corrected", "preliminary"]; // statuses the extractor counts

const state = { cfg: null, client: null, patientRef: null, performer: null, forms: [] };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function refuse(message) {
  const status = document.getElementById("status");
  status.className = "refusal";
  status.setAttribute("role", "alert");
  status.textContent = message + " Nothing was written.";
  document.getElementById("patient-banner").textContent = "No SMART launch context";
}

// ------------------------------------------------------------------ reading what the EHR has

function codings(concept) {
  return concept && Array.isArray(concept.coding) ? concept.coding : [];
}

function obsTime(o) {
  return o.effectiveDateTime || (o.effectivePeriod && (o.effectivePeriod.end || o.effectivePeriod.start)) ||
    o.effectiveInstant || o.issued || "";
}

function latestByCode(observations) {
  const latest = {};
  for (const o of observations) {
    if (!o || o.resourceType !== "Observation" || !COUNTED.includes(o.status)) continue;
    if (!o.subject || o.subject.reference !== state.patientRef) continue; // only the context patient's data
    for (const c of codings(o.code)) {
      const key = c.system + "|" + c.code;
      if (!latest[key] || obsTime(o) > obsTime(latest[key])) latest[key] = o;
    }
  }
  return latest;
}

function writtenCodes(form) {
  const local = (code) => LOCAL + "|" + code;
  if (form.kind === "points") return [local(form.total.code), ...form.items.map((i) => local(i.code))];
  if (form.kind === "scale") return form.scales.map((s) => s.code.system + "|" + s.code.code);
  if (form.kind === "boolean") return form.items.map((i) => local(i.code));
  return [local(form.code.code)];
}

function day(o) {
  return (obsTime(o) || "undated").slice(0, 10);
}

// ------------------------------------------------------------------ forms

function sectionFor(form, why) {
  const heading = el("h2", { id: "h-" + form.id, text: form.title });
  const include = el("input", { type: "checkbox", class: "include-box", id: "include-" + form.id });
  const section = el("section", { class: "form", "data-form": form.id, "aria-labelledby": heading.id },
    heading,
    ...why.map((w) => el("p", { class: "why", text: "Why: " + w })),
    el("p", { class: "hint", text: form.help }),
    el("p", { class: "source", text: "Source: " + form.source }),
  );
  const body = el("div", { class: "controls" });
  section.append(body);
  const prefill = el("p", { class: "prefill" });
  section.append(prefill);
  section.append(el("label", { class: "include", for: include.id }, include, " Record this now"));
  const status = el("p", { class: "form-status", role: "status" });
  section.append(status);
  include.addEventListener("change", () => section.classList.toggle("included", include.checked));
  const touched = () => { include.checked = true; section.classList.add("included"); };
  section.addEventListener("change", (ev) => { if (ev.target !== include) touched(); });
  return { section, body, prefill, include, status };
}

function radioGroup(name, legend, options, onChange) {
  const fs = el("fieldset", {}, el("legend", { text: legend }));
  options.forEach((opt, n) => {
    const id = name + "-" + n;
    const input = el("input", { type: "radio", name, id, value: String(opt.value) });
    if (onChange) input.addEventListener("change", onChange);
    fs.append(el("label", { for: id }, input, " " + opt.label));
  });
  return fs;
}

function checkedValue(root, name) {
  const input = root.querySelector(`input[name="${name}"]:checked`);
  return input ? input.value : null;
}

function setChecked(root, name, value) {
  const input = root.querySelector(`input[name="${name}"][value="${CSS.escape(String(value))}"]`);
  if (input) input.checked = true;
  return !!input;
}

const KINDS = {
  points: {
    render(form, ui) {
      const total = el("output", { class: "total", id: form.id + "-total", "aria-live": "polite" });
      const update = () => {
        const values = form.items.map((i) => checkedValue(ui.body, form.id + "-" + i.code));
        const done = values.filter((v) => v !== null);
        const sum = done.reduce((a, v) => a + Number(v), 0);
        if (done.length < values.length) {
          total.textContent = `Total so far: ${sum} (${done.length} of ${values.length} components)`;
          return;
        }
        const band = form.bands.find((b) => sum >= b.min && sum <= b.max);
        total.textContent = `${form.short} ${sum}: ${band ? band.label : ""}`;
        total.dataset.total = String(sum);
      };
      for (const item of form.items) {
        const opts = item.options.map((o) => ({ value: o.points, label: `${o.label} — ${o.points} point${o.points === 1 ? "" : "s"}` }));
        ui.body.append(radioGroup(form.id + "-" + item.code, item.label, opts, update));
      }
      ui.body.append(total);
      ui.update = update;
      update();
    },
    prefill(form, ui, latest) {
      const found = form.items.map((i) => latest[LOCAL + "|" + i.code]).filter(Boolean);
      found.forEach((o) => {
        const item = form.items.find((i) => codings(o.code).some((c) => c.code === i.code));
        setChecked(ui.body, form.id + "-" + item.code, o.valueInteger ?? (o.valueQuantity || {}).value);
      });
      ui.update();
      const total = latest[LOCAL + "|" + form.total.code];
      if (total) return `In the record: ${form.short} total ${total.valueInteger ?? (total.valueQuantity || {}).value} (${day(total)})`;
      return found.length ? `In the record: ${found.length} of ${form.items.length} items (latest ${day(found[0])})` : null;
    },
    build(form, ui) {
      const values = form.items.map((i) => checkedValue(ui.body, form.id + "-" + i.code));
      if (values.includes(null)) return { error: `choose one answer for each of the ${form.items.length} items` };
      const parts = form.items.map((item, n) => observation(form, { code: item.code, display: item.label },
        { valueInteger: Number(values[n]) }));
      const sum = values.reduce((a, v) => a + Number(v), 0);
      const total = observation(form, form.total, { valueInteger: sum });
      return { resources: [...parts, total], derived: true };
    },
  },
  coded: {
    render(form, ui) {
      const opts = form.options.map((o) => ({ value: o.code, label: `Grade ${o.label} — ${o.definition}` }));
      ui.body.append(radioGroup(form.id + "-value", form.title, opts));
    },
    prefill(form, ui, latest) {
      const o = latest[LOCAL + "|" + form.code.code];
      const answer = o && codings(o.valueCodeableConcept).find((c) => c.system === LOCAL);
      if (!answer) return null;
      setChecked(ui.body, form.id + "-value", answer.code);
      return `In the record: ${answer.display || answer.code} (${day(o)})`;
    },
    build(form, ui) {
      const code = checkedValue(ui.body, form.id + "-value");
      if (!code) return { error: "choose a grade" };
      const opt = form.options.find((o) => o.code === code);
      return { resources: [observation(form, form.code, {
        valueCodeableConcept: { coding: [{ system: LOCAL, code, display: "ESCC grade " + opt.label }] },
      })] };
    },
  },
  "neuro-exam": {
    render(form, ui) {
      const alert = el("p", { class: "emergency", role: "alert", hidden: true,
        text: "A new or progressing deficit is an emergency: call the spine and oncology teams now." });
      const onset = el("input", { type: "date", id: form.id + "-onset", name: form.id + "-onset" });
      const progress = el("input", { type: "checkbox", id: form.id + "-progress" });
      const extra = el("div", { hidden: true },
        el("label", { for: onset.id }, form.onset_label + " ", onset),
        el("label", { for: progress.id }, progress, " " + form.progress_label));
      const update = () => {
        const abnormal = form.parts.some((p) => checkedValue(ui.body, form.id + "-" + p.id) === "abnormal");
        extra.hidden = !abnormal;
        alert.hidden = !(abnormal && progress.checked);
      };
      for (const part of form.parts) {
        ui.body.append(radioGroup(form.id + "-" + part.id, part.label,
          [{ value: "normal", label: part.normal }, { value: "abnormal", label: part.abnormal }], update));
      }
      progress.addEventListener("change", update);
      ui.body.append(extra, alert);
      ui.onset = onset;
      ui.progress = progress;
    },
    prefill(form, ui, latest) {
      const o = latest[LOCAL + "|" + form.code.code];
      if (!o) return null;
      return `In the record: ${o.valueBoolean ? "new or progressive deficit" : "no new or progressive deficit"} (${day(o)}); record today's exam`;
    },
    build(form, ui) {
      const findings = form.parts.map((p) => [p, checkedValue(ui.body, form.id + "-" + p.id)]);
      if (findings.some(([, v]) => v === null)) return { error: "record motor, sensory and sphincter function" };
      const abnormal = findings.some(([, v]) => v === "abnormal");
      if (abnormal && !ui.onset.value) return { error: "give the onset date of the abnormal finding" };
      const component = findings.map(([p, v]) => ({
        code: { text: p.label }, valueCodeableConcept: { text: v === "normal" ? p.normal : p.abnormal },
      }));
      if (abnormal) component.push({ code: { text: form.onset_label }, valueDateTime: ui.onset.value });
      return { resources: [observation(form, form.code, { valueBoolean: abnormal && ui.progress.checked, component })] };
    },
  },
  scale: {
    render(form, ui) {
      const which = radioGroup(form.id + "-scale", "Scale", form.scales.map((s) => ({ value: s.id, label: s.label })));
      ui.body.append(which);
      ui.fieldsets = {};
      for (const scale of form.scales) {
        const opts = scale.options.map((o) => ({ value: o.value, label: `${o.value} — ${o.definition}` }));
        const fs = radioGroup(form.id + "-" + scale.id, scale.label, opts);
        fs.hidden = true;
        ui.fieldsets[scale.id] = fs;
        ui.body.append(fs);
      }
      const show = () => {
        const chosen = checkedValue(ui.body, form.id + "-scale");
        for (const [id, fs] of Object.entries(ui.fieldsets)) fs.hidden = id !== chosen;
      };
      which.addEventListener("change", show);
      ui.show = show;
    },
    prefill(form, ui, latest) {
      const found = form.scales.map((s) => [s, latest[s.code.system + "|" + s.code.code]]).filter(([, o]) => o);
      if (!found.length) return null;
      found.sort((a, b) => (obsTime(b[1]) > obsTime(a[1]) ? 1 : -1));
      const [scale, o] = found[0];
      setChecked(ui.body, form.id + "-scale", scale.id);
      setChecked(ui.body, form.id + "-" + scale.id, o.valueInteger);
      ui.show();
      return `In the record: ${scale.label} ${o.valueInteger} (${day(o)})`;
    },
    build(form, ui) {
      const id = checkedValue(ui.body, form.id + "-scale");
      const scale = form.scales.find((s) => s.id === id);
      const value = scale && checkedValue(ui.body, form.id + "-" + scale.id);
      if (value === null || value === undefined) return { error: "choose a scale and a score" };
      return { resources: [observation(form, scale.code, { valueInteger: Number(value) })] };
    },
  },
  quantity: {
    render(form, ui) {
      const value = el("input", { type: "number", id: form.id + "-value", min: String(form.min), max: String(form.max), step: "1" });
      const unit = el("select", { id: form.id + "-unit" }, form.units.map((u) => el("option", { value: u.code, text: u.label })));
      unit.value = "mo";
      ui.body.append(el("label", { for: value.id }, "Estimate ", value), el("label", { for: unit.id }, "Unit ", unit));
      ui.value = value;
      ui.unit = unit;
    },
    prefill(form, ui, latest) {
      const o = latest[LOCAL + "|" + form.code.code];
      const q = o && o.valueQuantity;
      if (!q || typeof q.value !== "number") return null;
      ui.value.value = String(q.value);
      if (form.units.some((u) => u.code === q.code)) ui.unit.value = q.code;
      return `In the record: ${q.value} ${q.unit || q.code || ""} (${day(o)})`;
    },
    build(form, ui) {
      const n = Number(ui.value.value);
      if (ui.value.value === "" || !Number.isFinite(n) || n < form.min || n > form.max) {
        return { error: `give a number from ${form.min} to ${form.max}` };
      }
      const u = form.units.find((x) => x.code === ui.unit.value);
      return { resources: [observation(form, form.code, { valueQuantity: { value: n, unit: u.label, system: UCUM, code: u.code } })] };
    },
  },
  boolean: {
    render(form, ui) {
      for (const item of form.items) {
        ui.body.append(radioGroup(form.id + "-" + item.code, item.question,
          [{ value: "true", label: item.yes }, { value: "false", label: item.no }]));
      }
    },
    prefill(form, ui, latest) {
      const lines = [];
      for (const item of form.items) {
        const o = latest[LOCAL + "|" + item.code];
        if (o && typeof o.valueBoolean === "boolean") {
          setChecked(ui.body, form.id + "-" + item.code, String(o.valueBoolean));
          lines.push(`${item.display}: ${o.valueBoolean ? "yes" : "no"} (${day(o)})`);
        }
      }
      return lines.length ? "In the record: " + lines.join("; ") : null;
    },
    build(form, ui) {
      const resources = [];
      for (const item of form.items) {
        const v = checkedValue(ui.body, form.id + "-" + item.code);
        if (v !== null) resources.push(observation(form, { code: item.code, display: item.display }, { valueBoolean: v === "true" }));
      }
      return resources.length ? { resources } : { error: "answer at least one question" };
    },
  },
};

function observation(form, code, value) {
  const coding = code.system ? code : { system: LOCAL, code: code.code, display: code.display };
  return {
    resourceType: "Observation",
    status: "final",
    category: [{ coding: [{ system: CATEGORY, code: form.category }] }],
    code: { coding: [{ system: coding.system, code: coding.code, display: coding.display }] },
    subject: { reference: state.patientRef },
    effectiveDateTime: new Date().toISOString(),
    performer: [{ reference: state.performer }],
    ...value,
  };
}

// ------------------------------------------------------------------ writing

async function checkWithService(form, resources) {
  const response = await fetch("api/check", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ form: form.id, patient: state.patientRef, performer: state.performer, resources }),
  });
  if (!response.ok) return { ok: false, issues: [`spinecds check failed (HTTP ${response.status})`] };
  return response.json();
}

function outcomeFrom(err) {
  const message = String((err && err.message) || err);
  const at = message.indexOf("\n\n");
  if (at >= 0) {
    try {
      const body = JSON.parse(message.slice(at + 2));
      if (body && body.resourceType === "OperationOutcome") return body;
    } catch (_) { /* not JSON */ }
  }
  return { resourceType: "OperationOutcome", issue: [{ severity: "error", code: "exception", diagnostics: message }] };
}

function describeOutcome(outcome) {
  return (outcome.issue || []).map((i) =>
    `${i.severity || "error"} ${i.code || ""}: ${i.diagnostics || (i.details && i.details.text) || ""}`).join("\n");
}

function label(resource) {
  const c = codings(resource.code)[0] || {};
  return c.display || c.code;
}

async function writeAll() {
  const button = document.getElementById("write");
  const list = document.getElementById("results-list");
  const summary = document.getElementById("results-summary");
  const results = document.getElementById("results");
  list.replaceChildren();
  results.hidden = false;
  button.disabled = true;
  try {
    // 1. build and check every ticked form; if any is incomplete or invalid, write nothing
    const batches = [];
    let problems = 0;
    for (const { form, ui } of state.forms) {
      ui.status.textContent = "";
      ui.status.className = "form-status";
      if (!ui.include.checked) continue;
      const built = KINDS[form.kind].build(form, ui);
      const verdict = built.error ? { ok: false, issues: [built.error] } : await checkWithService(form, built.resources);
      if (!verdict.ok) {
        problems += 1;
        ui.status.className = "form-status alert";
        ui.status.textContent = "Not written: " + verdict.issues.join("; ");
        continue;
      }
      batches.push({ form, ui, built });
    }
    if (problems) {
      summary.className = "alert";
      summary.textContent = `Nothing was written: ${problems} form(s) need attention (see the messages in red).`;
      return;
    }
    if (!batches.length) {
      summary.textContent = "Nothing was written: no form is ticked “Record this now”.";
      return;
    }
    // 2. write form by form; stop at the first refusal and say exactly what was and was not written
    let refused = false;
    let written = 0;
    let skipped = 0;
    for (const { form, ui, built } of batches) {
      const ids = [];
      const refusedBefore = refused;
      let refusedHere = false;
      for (const resource of built.resources) {
        const item = el("li", { "data-form": form.id });
        list.append(item);
        if (refused) {
          item.className = "skipped";
          item.textContent = `${form.title}: ${label(resource)} — not written (an earlier write was refused)`;
          skipped += 1;
          continue;
        }
        if (resource.subject.reference !== state.patientRef || resource.performer[0].reference !== state.performer) {
          throw new Error("refusing to write for anyone but the patient in context, as anyone but you");
        }
        if (built.derived && codings(resource.code)[0].code === form.total.code && ids.length) {
          resource.derivedFrom = ids.map((id) => ({ reference: "Observation/" + id }));
        }
        try {
          const created = await state.client.create(resource, { headers: { "content-type": "application/fhir+json" } });
          ids.push(created && created.id);
          written += 1;
          item.className = "written";
          item.textContent = `${form.title}: ${label(resource)} — written${created && created.id ? " (Observation/" + created.id + ")" : ""}`;
        } catch (err) {
          refused = true;
          refusedHere = true;
          item.className = "refused";
          item.textContent = `${form.title}: ${label(resource)} — refused by the EHR:`;
          item.append(el("pre", { class: "outcome", text: describeOutcome(outcomeFrom(err)) }));
        }
      }
      if (refusedHere || refusedBefore) {
        ui.status.className = "form-status alert";
        ui.status.textContent = refusedHere
          ? "Refused by the EHR: see “What was written” below."
          : "Not written (an earlier write was refused).";
      } else {
        ui.status.textContent = "Written.";
        ui.include.checked = false;
        ui.section.classList.remove("included");
      }
    }
    summary.className = refused ? "alert" : "";
    summary.textContent = refused
      ? `The EHR refused a write: ${written} written, 1 refused, ${skipped} not written. Correct and write again.`
      : `${written} observation(s) written. Return to the EHR: the cards update on its next call.`;
  } catch (err) {
    summary.className = "alert";
    summary.textContent = "Stopped: " + ((err && err.message) || err);
  } finally {
    button.disabled = false;
    document.getElementById("results-heading").focus();
  }
}

// ------------------------------------------------------------------ start

function parseAsks(raw) {
  if (typeof raw !== "string" || !raw) return null;
  try {
    const doc = JSON.parse(raw);
    return Array.isArray(doc.asks) ? doc.asks.filter((a) => a && typeof a.form === "string") : null;
  } catch (_) {
    return null;
  }
}

function patientLabel(p) {
  const name = (p.name || [])[0] || {};
  const text = name.text || [...(name.given || []), name.family].filter(Boolean).join(" ") || "(no name)";
  return `${text}${p.birthDate ? ", born " + p.birthDate : ""}${p.gender ? ", " + p.gender : ""}`;
}

async function main() {
  const status = document.getElementById("status");
  let client;
  try {
    const response = await fetch("api/config", { headers: { Accept: "application/json" } });
    state.cfg = await response.json();
    client = await window.FHIR.oauth2.ready();
  } catch (err) {
    refuse("This app must be launched from the EHR (SMART EHR launch): " + ((err && err.message) || err) + ".");
    return;
  }
  state.client = client;
  const patientId = client.patient && client.patient.id;
  if (!patientId) return refuse("The EHR gave no patient in context.");
  state.patientRef = "Patient/" + patientId;
  state.performer = client.getFhirUser();
  if (!state.performer) return refuse("The EHR did not say who you are (fhirUser), so nothing can be recorded as yours.");
  try {
    const patient = await client.request("Patient/" + encodeURIComponent(patientId));
    document.getElementById("patient-banner").textContent = "Patient: " + patientLabel(patient);
  } catch (err) {
    document.getElementById("patient-banner").textContent = "Patient " + patientId + " (details not readable)";
  }
  const forms = state.cfg.forms;
  const codes = forms.flatMap(writtenCodes).join(",");
  let observations = [];
  try {
    observations = await client.request(
      `Observation?patient=${encodeURIComponent(patientId)}&code=${encodeURIComponent(codes)}&_count=100`,
      { pageLimit: 10, flat: true });
  } catch (err) {
    status.className = "alert";
    status.textContent = "The record could not be read, so nothing is prefilled: " + ((err && err.message) || err);
  }
  const latest = latestByCode(Array.isArray(observations) ? observations : []);
  const asks = parseAsks((client.state.tokenResponse || {}).appContext);
  const why = {};
  if (asks) {
    for (const a of asks) (why[a.form] = why[a.form] || []).includes(`${a.why} (${a.rule})`) || why[a.form].push(`${a.why} (${a.rule})`);
  }
  for (const f of forms) {
    if (f.alternative_to && why[f.alternative_to] && !why[f.id]) {
      why[f.id] = why[f.alternative_to].map((w) => `${w}; this score is the alternative to an estimate`);
    }
  }
  const shown = asks ? forms.filter((f) => why[f.id]) : forms;
  if (!asks) {
    status.textContent = "The card's list of asks was not passed by the EHR: every form is shown, prefilled from the record.";
  }
  const container = document.getElementById("forms");
  for (const form of shown) {
    const ui = sectionFor(form, why[form.id] || ["Not in the card's list; shown because the app was opened without one."]);
    KINDS[form.kind].render(form, ui);
    const found = KINDS[form.kind].prefill(form, ui, latest);
    ui.prefill.textContent = found || "Not documented in the record.";
    container.append(ui.section);
    state.forms.push({ form, ui });
  }
  document.getElementById("intro").hidden = false;
  document.getElementById("actions").hidden = false;
  document.getElementById("write").addEventListener("click", writeAll);
}

main();

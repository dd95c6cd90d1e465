/* spinecds console: plain DOM, no framework, no external network. Every string from the server is
 * placed with textContent, except card detail, which goes through SpineMarkdown (escapes first). */
"use strict";

(function () {
  var TRACE = "org.spinecds.trace";
  var VIEWS = ["services", "rules", "try", "feedback"];
  var SVG_NS = "http://www.w3.org/2000/svg";
  var catalogue = null;
  var samples = [];

  function $(id) { return document.getElementById(id); }

  function safeUrl(url) { return /^https?:\/\//i.test(String(url || "")) ? String(url) : "#"; }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "className") node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function outcomeMessage(body, status) {
    if (body && body.resourceType === "OperationOutcome" && Array.isArray(body.issue)) {
      return body.issue.map(function (i) { return i.diagnostics; }).filter(Boolean).join("; ");
    }
    return "HTTP " + status;
  }

  function api(path, options) {
    return fetch(path, options || {}).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        if (!response.ok) throw new Error(outcomeMessage(body, response.status));
        return body;
      });
    });
  }

  function postJson(path, body) {
    return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  }

  /* ---------- navigation ---------- */
  function showView(name, focus) {
    if (VIEWS.indexOf(name) < 0) name = "services";
    VIEWS.forEach(function (view) {
      $("view-" + view).hidden = view !== name;
    });
    document.querySelectorAll(".tabs a").forEach(function (a) {
      if (a.dataset.view === name) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    if (name === "feedback") loadFeedback();
    if (focus) {
      var heading = $(name + "-heading");
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
  }

  /* ---------- services ---------- */
  function loadServices() {
    api("/cds-services").then(function (body) {
      var list = $("services-list");
      list.textContent = "";
      body.services.forEach(function (s) {
        var dl = el("dl");
        Object.keys(s.prefetch || {}).forEach(function (key) {
          dl.appendChild(el("dt", { text: key }));
          dl.appendChild(el("dd", { text: s.prefetch[key] }));
        });
        list.appendChild(el("article", { className: "service", "aria-labelledby": "svc-" + s.id },
          el("h3", { id: "svc-" + s.id, text: s.title }),
          el("p", {}, el("code", { text: s.id }), " answers hook ", el("code", { text: s.hook })),
          el("p", { text: s.description }),
          el("h4", { text: "Prefetch templates" }),
          dl,
          s.usageRequirements ? el("p", { className: "hint", text: s.usageRequirements }) : null));
      });
    }).catch(function (err) {
      $("services-list").textContent = "";
      $("services-list").appendChild(el("p", { className: "error", text: "Could not load services: " + err.message }));
    });
  }

  /* ---------- rule catalogue ---------- */
  function thresholdCell(rule) {
    var td = el("td");
    (rule.thresholdsInForce || []).forEach(function (t) {
      var local = t.localDefault;
      td.appendChild(el("div", {},
        el("code", { text: t.name }), " = " + t.value + " " + (t.unit || "") + " ",
        el("span", { className: "badge " + (local ? "local" : "site"), text: local ? "local default" : "site setting" })));
    });
    if (!td.childNodes.length) td.textContent = "–";
    return td;
  }

  function concludesCell(rule) {
    var td = el("td");
    (rule.variants || []).forEach(function (v) {
      if (v.concludes) {
        td.appendChild(el("div", {}, el("strong", { text: v.concludes.type }),
          " (" + v.concludes.indicator + ", card " + v.concludes.card + ")"));
      }
      if (v.derives) td.appendChild(el("div", { text: "derives " + v.derives }));
    });
    return td;
  }

  function renderRules() {
    var filter = $("rule-filter").value.trim().toLowerCase();
    var body = $("rules-table").querySelector("tbody");
    body.textContent = "";
    var shown = 0;
    catalogue.rules.forEach(function (rule) {
      var haystack = [rule.id, rule.title, rule.needs.join(" "), rule.sources.join(" "), rule.concludes.join(" ")]
        .join(" ").toLowerCase();
      if (filter && haystack.indexOf(filter) < 0) return;
      shown += 1;
      var catalogueText = (rule.catalogue || []).join(" | ");
      body.appendChild(el("tr", { id: "rule-" + rule.id },
        el("th", { scope: "row" }, el("a", { href: "/rules/" + encodeURIComponent(rule.id), text: rule.id })),
        el("td", {}, rule.title, catalogueText ? el("div", { className: "hint", text: catalogueText }) : null),
        el("td", { text: rule.needs.join(", ") || "–" }),
        concludesCell(rule),
        el("td", { text: rule.sources.join(", ") }),
        thresholdCell(rule)));
    });
    $("rule-count").textContent = shown + " of " + catalogue.rules.length + " rules shown";
  }

  function loadRules() {
    api("/console/api/rules").then(function (body) {
      catalogue = body;
      $("rule-base").textContent = "rule base " + body.ruleBase;
      renderRules();
    }).catch(function (err) {
      $("rule-count").textContent = "Could not load the catalogue: " + err.message;
    });
  }

  /* ---------- try it ---------- */
  function status(message, isError) {
    var node = $("try-status");
    node.textContent = "";
    node.appendChild(el("p", { className: isError ? "error" : "", text: message }));
  }

  function loadSamples() {
    api("/console/api/samples").then(function (body) {
      samples = body.samples;
      var select = $("sample-select");
      select.textContent = "";
      samples.forEach(function (s) {
        select.appendChild(el("option", { value: s.id, text: s.title + " (" + s.hook + ")" }));
      });
      showSampleSource();
    });
  }

  function showSampleSource() {
    var id = $("sample-select").value;
    var sample = samples.filter(function (s) { return s.id === id; })[0];
    $("sample-source").textContent = sample ? "Source: " + sample.source : "";
  }

  function runRequests(body, label) {
    var first = body.requests[0];
    var more = body.requests.length > 1 ? " (" + body.requests.length + " patients in the data; showing the first)" : "";
    status("Calling " + first.service + " for " + label + more + "…");
    return postJson("/cds-services/" + encodeURIComponent(first.service), first.request).then(function (response) {
      renderCards(response.cards || [], first.service);
      status(response.cards.length + " card(s) from " + first.service + " for " + label + more + ".");
    });
  }

  function onSample(event) {
    event.preventDefault();
    var id = $("sample-select").value;
    status("Loading sample…");
    api("/console/api/samples/" + encodeURIComponent(id) + "/request")
      .then(function (body) { return runRequests(body, "the sample"); })
      .catch(function (err) { status("Error: " + err.message, true); });
  }

  function onPaste(event) {
    event.preventDefault();
    var data;
    try {
      data = JSON.parse($("paste-data").value);
    } catch (err) {
      status("Error: the pasted text is not JSON (" + err.message + ")", true);
      $("paste-data").focus();
      return;
    }
    status("Preparing the request…");
    postJson("/console/api/requests", { data: data, hook: $("paste-hook").value })
      .then(function (body) { return runRequests(body, "the pasted data"); })
      .catch(function (err) { status("Error: " + err.message, true); });
  }

  function factItem(fact) {
    var text = fact.id + (fact.level ? "(" + fact.level + ")" : "") + " = " + String(fact.value);
    var li = el("li", {}, el("code", { text: text }));
    var refs = fact.references || (fact.reference ? [fact.reference] : []);
    if (refs.length) li.appendChild(document.createTextNode(" — FHIR: " + refs.join(", ")));
    if (fact.note) li.appendChild(document.createTextNode(" — " + fact.note));
    return li;
  }

  function sendFeedback(serviceId, card, item, stateNode, controls) {
    item.card = card.uuid;
    item.outcomeTimestamp = new Date().toISOString();
    controls.forEach(function (c) { c.disabled = true; });
    postJson("/cds-services/" + encodeURIComponent(serviceId) + "/feedback", { feedback: [item] })
      .then(function () {
        stateNode.className = "feedback-state " + item.outcome;
        stateNode.textContent = item.outcome === "accepted" ? "Accepted — feedback sent" : "Overridden — feedback sent";
      })
      .catch(function (err) {
        controls.forEach(function (c) { c.disabled = false; });
        stateNode.className = "feedback-state error";
        stateNode.textContent = "Feedback not sent: " + err.message;
      });
  }

  function renderCard(card, serviceId, index) {
    var trace = (card.extension || {})[TRACE] || {};
    var id = "card-" + index;
    var article = el("article", { className: "card indicator-" + card.indicator, "aria-labelledby": id + "-summary",
      "data-rules": (trace.rules || []).join(" "), "data-card": trace.card || "" });
    article.appendChild(el("header", {},
      el("span", { className: "indicator", text: card.indicator }),
      el("h4", { id: id + "-summary", text: card.summary })));
    if (card.source) {
      var src = card.source.url ? el("a", { href: safeUrl(card.source.url), rel: "noopener noreferrer", target: "_blank", text: card.source.label })
        : document.createTextNode(card.source.label || "");
      article.appendChild(el("p", { className: "source" }, "Source: ", src));
    }
    var detail = el("div", { className: "detail" });
    detail.innerHTML = window.SpineMarkdown.render(card.detail || "");
    article.appendChild(detail);

    var facts = trace.facts || [];
    article.appendChild(el("details", {},
      el("summary", { text: "Facts behind this card (" + facts.length + ") and rules " + (trace.rules || []).join(", ") }),
      el("ul", { className: "facts" }, ...facts.map(factItem))));

    if (card.links && card.links.length) {
      article.appendChild(el("ul", { className: "links", "aria-label": "Links" }, ...card.links.map(function (link) {
        return el("li", {}, el("a", { href: safeUrl(link.url), rel: "noopener noreferrer", target: "_blank", text: link.label }));
      })));
    }

    var stateNode = el("span", { className: "feedback-state", role: "status" });
    var actions = el("div", { className: "actions", role: "group", "aria-label": "Feedback on this card" });
    var controls = [];
    (card.suggestions || []).forEach(function (s) {
      var button = el("button", { type: "button", className: "accept", "aria-label": "Accept suggestion: " + s.label,
        text: "Accept: " + s.label });
      button.addEventListener("click", function () {
        sendFeedback(serviceId, card, { outcome: "accepted", acceptedSuggestions: [{ id: s.uuid }] }, stateNode, controls);
      });
      controls.push(button);
      actions.appendChild(button);
    });
    var reasonId = id + "-reason";
    var commentId = id + "-comment";
    var reason = el("select", { id: reasonId }, el("option", { value: "", text: "(no coded reason)" }),
      ...(card.overrideReasons || []).map(function (r, i) { return el("option", { value: String(i), text: r.display }); }));
    var comment = el("input", { id: commentId, type: "text", autocomplete: "off" });
    var override = el("button", { type: "button", className: "danger override", text: "Override" });
    override.addEventListener("click", function () {
      var chosen = reason.value === "" ? null : card.overrideReasons[Number(reason.value)];
      var why = {};
      if (chosen) why.reason = { system: chosen.system, code: chosen.code, display: chosen.display };
      if (comment.value.trim()) why.userComment = comment.value.trim();
      var item = { outcome: "overridden" };
      if (why.reason || why.userComment) item.overrideReason = why;
      sendFeedback(serviceId, card, item, stateNode, controls);
    });
    controls.push(reason, comment, override);
    actions.appendChild(el("div", {}, el("label", { for: reasonId, text: "Override reason" }), reason));
    actions.appendChild(el("div", {}, el("label", { for: commentId, text: "Comment (optional)" }), comment));
    actions.appendChild(override);
    actions.appendChild(stateNode);
    article.appendChild(actions);
    return article;
  }

  function renderCards(cards, serviceId) {
    var list = $("cards-list");
    list.textContent = "";
    if (!cards.length) list.appendChild(el("p", { text: "No cards: nothing to say for this patient." }));
    cards.forEach(function (card, i) { list.appendChild(renderCard(card, serviceId, i)); });
    $("cards").hidden = false;
  }

  /* ---------- feedback ---------- */
  function pct(rate) { return rate === null || rate === undefined ? "–" : Math.round(rate * 100) + "%"; }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function drawChart(rows) {
    var holder = $("feedback-chart");
    holder.textContent = "";
    if (!rows.length) {
      holder.appendChild(el("p", { text: "No feedback yet." }));
      return;
    }
    var rowHeight = 28;
    var labelWidth = 180;
    var barWidth = 360;
    var height = rows.length * rowHeight + 10;
    var max = Math.max.apply(null, rows.map(function (r) { return r.feedback; }));
    var chart = svg("svg", { viewBox: "0 0 " + (labelWidth + barWidth + 320) + " " + height, role: "img",
      "aria-labelledby": "chart-title", width: labelWidth + barWidth + 320, height: height });
    chart.appendChild(svg("title", { id: "chart-title" },
      "Accepted and overridden cards per rule: " + rows.map(function (r) {
        return r.rule + " " + r.accepted + " accepted, " + r.overridden + " overridden";
      }).join("; ")));
    rows.forEach(function (r, i) {
      var y = i * rowHeight + 5;
      var acceptedW = (r.accepted / max) * barWidth;
      var overriddenW = (r.overridden / max) * barWidth;
      chart.appendChild(svg("text", { x: labelWidth - 8, y: y + 17, "text-anchor": "end", fill: "#1b1b1b", "font-size": 14 }, r.rule));
      chart.appendChild(svg("rect", { x: labelWidth, y: y, width: acceptedW, height: 20, fill: "#1d6b2f", class: "bar-accepted" }));
      chart.appendChild(svg("rect", { x: labelWidth + acceptedW, y: y, width: overriddenW, height: 20, fill: "#a3151a",
        class: "bar-overridden" }));
      chart.appendChild(svg("text", { x: labelWidth + acceptedW + overriddenW + 8, y: y + 16, fill: "#1b1b1b", "font-size": 13 },
        r.accepted + " accepted · " + r.overridden + " overridden (" + pct(r.acceptanceRate) + " accepted)"));
    });
    holder.appendChild(chart);
  }

  function loadFeedback() {
    api("/console/api/feedback-stats").then(function (body) {
      var withFeedback = body.rules.filter(function (r) { return r.feedback > 0; });
      $("feedback-summary").textContent = body.cardsWithFeedback + " card(s) with feedback across " +
        withFeedback.length + " rule(s); " + body.unmatchedFeedback + " feedback item(s) for unknown cards.";
      drawChart(withFeedback);
      var tbody = $("feedback-table").querySelector("tbody");
      tbody.textContent = "";
      body.rules.forEach(function (r) {
        tbody.appendChild(el("tr", { "data-rule": r.rule },
          el("th", { scope: "row", text: r.rule }),
          el("td", { text: String(r.issued) }),
          el("td", { className: "accepted-count", text: String(r.accepted) }),
          el("td", { className: "overridden-count", text: String(r.overridden) }),
          el("td", { text: pct(r.acceptanceRate) }),
          el("td", { text: pct(r.overrideRate) })));
      });
    }).catch(function (err) {
      $("feedback-summary").textContent = "Could not load feedback: " + err.message;
    });
  }

  /* ---------- start ---------- */
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".tabs a").forEach(function (a) {
      a.addEventListener("click", function (event) {
        event.preventDefault();
        history.replaceState(null, "", "#" + a.dataset.view);
        showView(a.dataset.view, true);
      });
    });
    window.addEventListener("hashchange", function () { showView(location.hash.slice(1), true); });
    $("rule-filter").addEventListener("input", function () { if (catalogue) renderRules(); });
    $("sample-select").addEventListener("change", showSampleSource);
    $("sample-form").addEventListener("submit", onSample);
    $("paste-form").addEventListener("submit", onPaste);
    $("refresh-feedback").addEventListener("click", loadFeedback);
    loadServices();
    loadRules();
    loadSamples();
    showView(location.hash.slice(1) || "services", false);
  });
})();

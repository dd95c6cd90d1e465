/* A minimal, safe markdown subset for card detail (CDS Hooks: GitHub-flavoured markdown).
 * HTML is escaped first; then only: paragraphs, "- " and "1. " lists, "> " quotes, **bold**, *italic*,
 * `code` and [links](https://...) with http(s) URLs. Nothing from the input becomes markup
 * except through these rules, so card text can never inject HTML or script.
 */
"use strict";

(function (global) {
  function escapeHtml(text) {
    return String(text)
      .replace(/&/g, "&amp;")
      .replace(/</g, "&lt;")
      .replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;")
      .replace(/'/g, "&#39;");
  }

  function inline(escaped) {
    var codes = [];
    var out = escaped.replace(/`([^`]+)`/g, function (_m, code) {
      codes.push(code);
      return "\u0000" + (codes.length - 1) + "\u0000";
    });
    out = out.replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, function (_m, label, url) {
      return '<a href="' + url + '" rel="noopener noreferrer" target="_blank">' + label + "</a>";
    });
    out = out.replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>");
    out = out.replace(/(^|[\s(])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>");
    out = out.replace(/\u0000(\d+)\u0000/g, function (_m, i) {
      return "<code>" + codes[Number(i)] + "</code>";
    });
    return out;
  }

  function render(markdown) {
    var lines = escapeHtml(markdown || "").split(/\r?\n/);
    var html = [];
    var block = null; // "ul" | "ol" | "blockquote" | "p"
    var buffer = [];
    function flush() {
      if (!block) return;
      if (block === "ul" || block === "ol") {
        html.push("<" + block + ">" + buffer.map(function (l) { return "<li>" + inline(l) + "</li>"; }).join("") + "</" + block + ">");
      }
      else if (block === "blockquote") html.push("<blockquote><p>" + buffer.map(inline).join("<br>") + "</p></blockquote>");
      else html.push("<p>" + buffer.map(inline).join("<br>") + "</p>");
      block = null;
      buffer = [];
    }
    lines.forEach(function (line) {
      var item = /^\s*[-*] (.*)$/.exec(line);
      var numbered = /^\s*\d{1,3}\. (.*)$/.exec(line);
      var quote = /^&gt; ?(.*)$/.exec(line);
      var kind = item ? "ul" : numbered ? "ol" : quote ? "blockquote" : line.trim() ? "p" : null;
      if (kind !== block) flush();
      if (!kind) return;
      block = kind;
      buffer.push(item ? item[1] : numbered ? numbered[1] : quote ? quote[1] : line);
    });
    flush();
    return html.join("\n");
  }

  global.SpineMarkdown = { render: render, escapeHtml: escapeHtml };
})(window);

"""The rule reference as HTML for a person following a card link (``/rules``, ``/rules/{id}``).

A browser asks for ``text/html`` and gets a page; an API client (``application/json``, ``*/*``)
gets the JSON it always got. Every value is escaped by Jinja's autoescaping.
"""

from __future__ import annotations

from typing import Any

from flask import Request, render_template_string

from service.cards.build import fill_thresholds, reference_label
from service.engine.reference import describe_condition
from service.engine.ruleset import Rule, RuleBase

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} – spinecds rule reference</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.5rem}h2{font-size:1.1rem;margin-top:1.5rem}code{background:#f3f3f3;padding:0 .2rem}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
.note{color:#555;font-size:.9rem}
</style></head><body>
<p class="note"><a href="{{ index }}">spinecds rule reference</a> · rule base {{ digest }} ·
decision support only; clinical judgement applies</p>
{% if rules %}
<h1>{{ rules[0].id }}: {{ rules[0].title }}</h1>
{% for r in rules %}
<section>
{% if rules|length > 1 %}<h2>{{ r.title }}</h2>{% endif %}
<p><strong>When</strong> {{ condition(r) }}</p>
{% if r.conclude %}
<p><strong>The card says</strong> ({{ r.conclude.indicator }}): {{ fill(r.conclude.summary) }}</p>
<p>{{ fill(r.conclude.text or "") }}</p>
{% for q in r.conclude.quotes or [] %}
<blockquote>“{{ q.text }}” — {{ reference(q.seed) }}</blockquote>
{% endfor %}
{% endif %}
{% if r.derive %}<p><strong>Derives</strong> {{ r.derive[0] }} = {{ r.derive[1] }}</p>{% endif %}
<p class="note">Catalogue: {{ r.catalogue }} · sources {{ r.sources|join(", ") }} · file {{ r.file }}</p>
</section>
{% endfor %}
{% if thresholds %}
<h2>Thresholds in force</h2>
<table><tr><th>Threshold</th><th>Value</th><th>Basis</th></tr>
{% for t in thresholds %}<tr><td>{{ t.label }}</td>
<td>{{ t.value }} {{ t.unit }}{% if t.local %} (local default){% endif %}</td>
<td>{{ t.basis }}</td></tr>{% endfor %}
</table>
{% endif %}
{% else %}
<h1>Rule reference</h1>
<table><tr><th>Rule</th><th>Title</th></tr>
{% for rid, title in index_rows %}<tr><td><a href="{{ index }}/{{ rid }}">{{ rid }}</a></td><td>{{ title }}</td></tr>
{% endfor %}</table>
{% endif %}
</body></html>
"""


def wants_html(request: Request) -> bool:
    """A browser: text/html preferred over JSON by the Accept header (``*/*`` alone means JSON)."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.accept_mimetypes["text/html"] > request.accept_mimetypes["application/json"]


def rule_page(base: RuleBase, rules: list[Rule], index: str) -> str:
    names = sorted({t for r in rules for t in r.thresholds})
    thresholds: list[dict[str, Any]] = [
        {
            "label": base.thresholds[n].get("label", n),
            "value": base.thresholds[n]["value"],
            "unit": base.thresholds[n].get("unit", ""),
            "basis": base.thresholds[n].get("basis", ""),
            "local": base.thresholds[n].get("local_default", True),
        }
        for n in names
    ]
    return render_template_string(
        _PAGE,
        title=f"{rules[0].id}: {rules[0].title}",
        rules=rules,
        thresholds=thresholds,
        digest=base.digest,
        index=index,
        condition=lambda r: describe_condition(r, base),
        fill=lambda text: fill_thresholds(str(text), base),
        reference=lambda key: reference_label(base, key),
    )


def index_page(base: RuleBase, index: str) -> str:
    rows = [(rid, base.by_id(rid)[0].title) for rid in base.rule_ids]
    return render_template_string(_PAGE, title="Rules", rules=[], index_rows=rows, digest=base.digest, index=index)

"""How much one feedback request may carry (``POST /cds-services/{id}/feedback``): the one place these
numbers are written.

Feedback is a few identifiers and an optional comment per card; these bounds are far above any EHR's
use and far below what would let one request fill the database or a worker's memory. Over the
request bounds: 413; a field over its bound: 400 naming the field. Both OperationOutcomes, nothing
stored. The feedback table's columns (``service.db.feedback_items``) are sized from ``STORED_TEXT``,
so text that passes is text the database can hold (never a database error read as an outage);
``tests/test_feedback_limits.py`` checks that the OpenAPI document and the README say the same.
"""

from __future__ import annotations

MAX_FEEDBACK_BYTES = 1_048_576  # one request body (the service call limit is SPINECDS_MAX_REQUEST_BYTES)
MAX_FEEDBACK_ITEMS = 100  # items in one request
MAX_ACCEPTED_SUGGESTIONS = 50  # acceptedSuggestions per item
MAX_SUGGESTION_ID_CHARS = 100  # acceptedSuggestions[].id (a uuid is 36)

MAX_CARD_CHARS = 100  # card (the card's uuid: 36)
MAX_OUTCOME_TIMESTAMP_CHARS = 40  # outcomeTimestamp (RFC 3339: 20-35)
MAX_USER_COMMENT_CHARS = 4000  # overrideReason.userComment
MAX_OVERRIDE_CODE_CHARS = 200  # overrideReason.reason.code
MAX_OVERRIDE_SYSTEM_CHARS = 300  # overrideReason.reason.system

# Each stored text of an item, by its path in the item, with its longest accepted length (checked in this order).
STORED_TEXT: tuple[tuple[tuple[str, ...], int], ...] = (
    (("card",), MAX_CARD_CHARS),
    (("outcomeTimestamp",), MAX_OUTCOME_TIMESTAMP_CHARS),
    (("overrideReason", "userComment"), MAX_USER_COMMENT_CHARS),
    (("overrideReason", "reason", "code"), MAX_OVERRIDE_CODE_CHARS),
    (("overrideReason", "reason", "system"), MAX_OVERRIDE_SYSTEM_CHARS),
)

"""How much one feedback request may carry (``POST /cds-services/{id}/feedback``).

Feedback is a few identifiers and an optional comment per card; these bounds are far above any EHR's
use and far below what would let one request fill the database or a worker's memory. Over the
request bounds: 413; a field over its bound: 400 naming the field. Both OperationOutcomes, nothing
stored.
"""

from __future__ import annotations

MAX_FEEDBACK_BYTES = 1_048_576  # one request body (the service call limit is SPINECDS_MAX_REQUEST_BYTES)
MAX_FEEDBACK_ITEMS = 100  # items in one request
MAX_USER_COMMENT_CHARS = 4000  # overrideReason.userComment
MAX_ACCEPTED_SUGGESTIONS = 50  # acceptedSuggestions per item
MAX_SUGGESTION_ID_CHARS = 100  # acceptedSuggestions[].id (a uuid is 36)

"""The review console: a small web app over the review and decisions topics (``flagstream console``)."""

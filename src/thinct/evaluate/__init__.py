"""`thinct evaluate`: metrics, cases, methods, scoring, reports and figures."""

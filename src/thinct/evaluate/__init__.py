"""`thinct evaluate`: metrics (with VIF and the vessel tree's topology), cases, methods,
scoring, reports and figures."""

"""Model monitoring: live-traffic profiles against the training reference, drift, data quality and performance per window, alerts and the monitoring report."""

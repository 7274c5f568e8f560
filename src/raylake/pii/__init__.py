"""PII detection, column classification and the policies applied at ingestion."""

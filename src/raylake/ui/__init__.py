"""``raylake ui``: a read-only web application over the lake (server-rendered pages).

Tables (versions, history with the run that wrote each version, a paginated sample of
rows at any version, diffs, tags, quarantine reasons), runs, lineage as an interactive
graph, the model registry, quality and monitoring reports, and branches. Every page
reads only what it shows (a page of the Delta log, a few files' rows); what a version
holds never changes, so it is cached by version. See docs/ui.md.
"""

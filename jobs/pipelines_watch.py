"""Watch a data-driven pipeline and run its stale stages; what `ray job submit` runs.

    python jobs/pipelines_watch.py flights lake.root=/tmp/lake
    ray job submit --working-dir . -- python jobs/pipelines_watch.py flights \
        lake.root=s3://bucket/lake pipeline.stages.ingest_flights.source.path=s3://bucket/drop/flights

Options as `raylake pipelines watch` (--interval, --max-iterations, --duration, --once,
--stage); `ray job stop` ends it after the stage under way.
"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli.pipelines import pipelines_command

if __name__ == "__main__":
    sys.exit(pipelines_command("pipelines", ["watch", *sys.argv[1:]]))

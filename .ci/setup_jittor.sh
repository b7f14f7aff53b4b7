#!/usr/bin/env bash
# Set up the Jittor backend on a Debian (bookworm) CPU machine, offline except for PyPI and apt:
#   1. Debian's oneDNN 2.x (libdnnl-dev), linked where jittor 1.3.11 looks for its own oneDNN
#      (without it jittor's CPU convs are ~100x slower; with use_mkl=1 and no folder it downloads);
#   2. pip install jittor==1.3.11.0 with numpy<2 (numpy 2 breaks jittor);
#   3. the first `import jittor` (compiles jittor's core, ~4-5 min on 2 cores), with the
#      environment liif uses (liif/backends/jittor_setup.py), checked by a printed sentinel
#      and retried once (jittor may exit 0 without running after rebuilding its utilities);
#   4. a tiny LIIF forward/backward/Adam step and a chunked query and upscale, so the ops the tests
#      use are compiled too;
#   5. OpenMPI (openmpi-bin, libopenmpi-dev) for multi-process Jittor (`mpirun -np N python run.py
#      framework=jittor ...`), and a 2-rank training step under mpirun, which builds Jittor's MPI
#      ops once (so the tests don't) and checks that mpirun works here.
# Idempotent: each step is skipped when already done; a warm run takes a few seconds.
# Needs root (or sudo) for apt. Use the same python as the tests: PYTHON=/path/to/python.
set -euo pipefail

PYTHON="${PYTHON:-python}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
t0=$(date +%s)
say() { echo "[setup_jittor $(( $(date +%s) - t0 ))s] $*"; }

# 1. Debian packages: oneDNN, and OpenMPI for step 5 (one apt run, only for what is missing)
MISSING=""
for pkg in libdnnl-dev openmpi-bin libopenmpi-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || MISSING="$MISSING $pkg"
done
if [ -n "$MISSING" ]; then
    say "apt-get install$MISSING"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING >/dev/null
fi
# the folder jittor checks before downloading (setting mkl_include_path/mkl_lib_path crashes 1.3.11)
D="$("$PYTHON" -c "import sys; sys.path.insert(0, '$ROOT'); from liif.backends import jittor_setup as s; print(s.onednn_dir())" 2>/dev/null \
     || echo "${JITTOR_HOME:-$HOME}/.cache/jittor/mkl/dnnl_lnx_2.2.0_cpu_gomp")"
LIB="$(dpkg -L libdnnl-dev | grep '/libdnnl\.so$' | head -1)"
INC="$(dirname "$(dpkg -L libdnnl-dev | grep '/dnnl\.hpp$' | head -1)")"
mkdir -p "$D/lib"
ln -sf "$LIB" "$D/lib/libmkldnn.so"
ln -sfn "$INC" "$D/include"
say "oneDNN: $D -> $LIB"

# 2. jittor itself (a source package; nothing is compiled at install)
if ! "$PYTHON" -c "import importlib.metadata as m, sys; sys.exit(m.version('jittor') != '1.3.11.0')" 2>/dev/null; then
    say "pip install jittor==1.3.11.0"
    "$PYTHON" -m pip install -q "jittor==1.3.11.0" "numpy<2"
fi
"$PYTHON" -c "import numpy, sys; sys.exit(int(numpy.__version__.split('.')[0]) >= 2)" \
    || { echo "numpy>=2 is installed; jittor 1.3.11 needs numpy<2" >&2; exit 1; }

# 3. the first import (compiles the core once per cache), with liif's environment defaults
warm() {
    (cd "$ROOT" && "$PYTHON" -c "
from liif.backends import jittor_setup
jt = jittor_setup.import_jittor()
from jittor import compile_extern
import os
print('JT_OK', 'use_mkl=' + os.environ['use_mkl'], 'mkl_ops=' + str(compile_extern.mkl_ops is not None))
")
}
say "import jittor (cold: several minutes)"
out="$(warm || true)"
case "$out" in *JT_OK*) ;; *) say "no sentinel; importing again"; out="$(warm)";; esac
case "$out" in *JT_OK*) say "$out";; *) echo "import jittor failed" >&2; exit 1;; esac

# 4. compile the ops a LIIF step and chunked decoding use (conv, linear, unfold, grid sample, Adam, setitem)
say "warming LIIF ops"
(cd "$ROOT" && "$PYTHON" -c "
import numpy as np
from liif.models import registry
from liif.backends import jittor as backend
spec = {'name': 'liif', 'args': {'encoder_spec': {'name': 'edsr-baseline', 'args': {'n_resblocks': 1, 'n_feats': 8, 'no_upsampling': True}},
        'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [16]}}}}
net = registry.make(spec, backend)
rng = np.random.default_rng(0)
batch = {'inp': rng.standard_normal((1, 3, 6, 5), dtype=np.float32), 'coord': rng.uniform(-1, 1, (1, 7, 2)).astype(np.float32),
         'cell': np.full((1, 7, 2), 0.1, np.float32), 'gt': rng.standard_normal((1, 7, 3), dtype=np.float32)}
opt = backend.adam(net, 1e-4)
from liif.training.step import train_step
print('loss', train_step(backend, net, opt, batch))
from liif.inference.api import Model  # chunked decoding into a preallocated output (query, upscale)
model = Model(net, backend, spec, 'cpu')
print('query', model.query(batch['inp'], batch['coord'], batch['cell'], bsize=3).shape,
      'upscale', model.upscale(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8), (13, 11), bsize=50).shape)
")

# 5. Jittor's MPI ops: built on the first import under mpirun, then the kernels a 2-rank training
#    step uses (the gradient all-reduce in the optimizer, the loss all-reduce, the barrier)
say "warming Jittor's MPI ops (mpirun -np 2)"
out="$(cd "$ROOT" && mpirun --allow-run-as-root --oversubscribe -np 2 "$PYTHON" -c "
import numpy as np
from liif.models import registry
from liif.backends import jittor as backend
rank, world = backend.distributed_init()
spec = {'name': 'liif', 'args': {'encoder_spec': {'name': 'edsr-baseline', 'args': {'n_resblocks': 1, 'n_feats': 8, 'no_upsampling': True}},
        'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [16]}}}}
net = backend.wrap_distributed(registry.make(spec, backend))
rng = np.random.default_rng(rank)
batch = {'inp': rng.standard_normal((1, 3, 6, 5), dtype=np.float32), 'coord': rng.uniform(-1, 1, (1, 7, 2)).astype(np.float32),
         'cell': np.full((1, 7, 2), 0.1, np.float32), 'gt': rng.standard_normal((1, 7, 3), dtype=np.float32)}
from liif.training.step import train_step
loss = backend.all_reduce_mean(train_step(backend, net, backend.adam(net, 1e-4), batch))
backend.barrier()
if rank == 0:
    print('MPI_OK world_size', world, 'mean loss', loss, flush=True)
")" || true
case "$out" in *"MPI_OK world_size 2 "*) say "$out";; *) echo "$out"; echo "Jittor under mpirun failed" >&2; exit 1;; esac
say "done"

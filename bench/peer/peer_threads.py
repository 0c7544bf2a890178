"""Thread count of a peer, fixed before torch loads. OpenBLAS (Debian's libblas.so.3 behind
torch's CPU matmuls) sizes its own thread pool to the cores when it loads, and
torch.set_num_threads does not resize it: a peer told "--threads 1" ran its fp32 matmuls on every
core. Both peers import this module before torch, so their BLAS and OpenMP pools take the
--threads they are given (as rlrf4rec's runtime sets its own)."""
import os
import sys


def pin_threads_from_argv(argv=None):
    argv = sys.argv if argv is None else argv
    threads = None
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            threads = argv[i + 1]
        elif a.startswith("--threads="):
            threads = a.split("=", 1)[1]
    if threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ[var] = threads
    return threads


pin_threads_from_argv()

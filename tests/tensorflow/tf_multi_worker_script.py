"""One process of the MultiWorkerMirroredStrategy test (``test_tf_distribute.py``).

``python tf_multi_worker_script.py OUT.npz WORKSPACE``: with ``TF_CONFIG`` set, this process
is one worker of the cluster it describes and trains under MultiWorkerMirroredStrategy; without
it, it trains on one device. Either way the ``loop_kd`` case of ``tf_distribute_script`` (global
batch 8), and the student's final weights and epoch losses are saved to ``OUT.npz``.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_distribute_script import LOOP_CASES, batches, data, run_loop  # noqa: E402


def local_samples(strategy, case):
    """How many samples of an epoch this worker's replica gets from the distributed dataset
    (as the loop distributes it): half of them when the data is split between the workers."""
    distributed = strategy.experimental_distribute_dataset(
        batches(*data(case["samples"]), case["batch"]))
    return sum(int(tf.shape(local[0])[0]) for batch in distributed
               for local in [strategy.experimental_local_results(batch)[0]])


def main(out, workspace):
    tf.config.threading.set_intra_op_parallelism_threads(1)
    # Created first: the strategy has to set up the cluster before TensorFlow runs anything.
    strategy = (tf.distribute.MultiWorkerMirroredStrategy() if os.environ.get("TF_CONFIG")
                else None)
    case = LOOP_CASES["loop_kd"]
    weights, losses = run_loop(case, strategy, workspace)
    layout = ([strategy.num_replicas_in_sync, local_samples(strategy, case)] if strategy
              else [1, case["samples"]])
    np.savez(out, *weights, losses=np.asarray(losses), layout=np.asarray(layout))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""The study's ``tfprune`` command, with TensorFlow op determinism when asked.

``scripts/run_study.sh`` starts every study run through this file, so the runs of
issue 25's extension can enable ``tf.config.experimental.enable_op_determinism()``
(``TFPRUNE_OP_DETERMINISM=1``) without changing the pinned code that trains them.

Usage: python scripts/study_tfprune.py ARGS...   (the arguments of ``tfprune``)
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    if os.environ.get("TFPRUNE_OP_DETERMINISM") == "1":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    from tfprune.cli.main import main as tfprune_main

    return tfprune_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

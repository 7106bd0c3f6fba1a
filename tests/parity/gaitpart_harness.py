"""Reference outputs of OpenGait's GaitPart for the parity test (``tests/test_parity_gaitpart.py``).

Runs OpenGait's own code (``GaitPart`` with its ``Plain`` backbone), OUTSIDE the project, and is
not collected by pytest. As ``gaitset_harness.py`` (whose helpers it uses): the reference network
is built without ``BaseModel.__init__``, seeded, initialised by OpenGait's ``init_parameters`` and
run in eval mode on (a) a fixed-length batch and (b) variable-length sequences (lengths 9, 1, 4,
2, 5: shorter than the TFA's windows included), concatenated with ``seqL`` as OpenGait's evaluator
feeds them and each alone; the harness checks that both agree.

Regenerate the committed fixtures (small widths; ``tests/fixtures/parity/gaitpart.*``)::

    /work/ref/venv/bin/python tests/parity/gaitpart_harness.py /work/ref/OpenGait

``--full --out DIR`` writes the published size (OpenGait's configs/gaitpart/gaitpart.yaml; not
committed: about 5 MB) for a one-off measurement.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gaitset_harness import FIXTURES, build, import_model, make_reference, write

SMALL = {
    "backbone_cfg": {"in_channels": 1, "type": "Plain",
                     "layers_cfg": ["BC-8", "BC-8", "M", "FC-8-2", "FC-8-2", "M", "FC-16-3", "FC-16-3"]},
    "SeparateFCs": {"in_channels": 16, "out_channels": 8, "parts_num": 16},
    "bin_num": [16],
}
FULL = {  # OpenGait's configs/gaitpart/gaitpart.yaml
    "backbone_cfg": {"in_channels": 1, "type": "Plain",
                     "layers_cfg": ["BC-32", "BC-32", "M", "FC-64-2", "FC-64-2", "M",
                                    "FC-128-3", "FC-128-3"]},
    "SeparateFCs": {"in_channels": 128, "out_channels": 128, "parts_num": 16},
    "bin_num": [16],
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("opengait", type=Path, help="OpenGait checkout (the folder holding opengait/)")
    parser.add_argument("--full", action="store_true", help="the published widths (not committed)")
    parser.add_argument("--out", type=Path, default=FIXTURES, help="output folder")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    cls = import_model(args.opengait, "gaitpart", "GaitPart")
    model_cfg = {"model": "GaitPart", **(FULL if args.full else SMALL)}
    model = build(cls, model_cfg, seed=22)
    write(args.out, "gaitpart", model, model_cfg, make_reference(model, seed=22), iteration=120000)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

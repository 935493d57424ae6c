"""Draw images from a trained checkpoint: ``python sample.py --help`` lists the flags.

The command is provided (provided/sampling.py); it runs your Phase 4 and 5 code
(noise_schedule.py, unet.py, diffusion.py, degradations.py) through --impl.
"""

import sys

from provided.sampling import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m fer_study.realtime {webcam,video,predict} ...``."""

import sys

from fer_study.realtime.cli import main

sys.exit(main())

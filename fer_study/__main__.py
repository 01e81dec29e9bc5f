import sys

from fer_study.cli import main

sys.exit(main())

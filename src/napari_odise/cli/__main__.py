import sys

from napari_odise.cli import main

sys.exit(main())

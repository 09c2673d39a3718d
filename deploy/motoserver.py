"""`python -m deploy.motoserver -H HOST -p PORT`: the documented entry point of the embedded cloud's server.

The code lives in deploy/localcloud/server.py; this name stays because people run it themselves.
"""

import sys

from deploy.localcloud.server import main

if __name__ == "__main__":
    main(sys.argv[1:])

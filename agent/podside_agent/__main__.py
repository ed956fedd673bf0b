"""`python -m podside_agent` starts the agent."""

import sys

from podside_agent.main import main

sys.exit(main())

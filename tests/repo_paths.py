"""Where the repository and the tests' own folder are, for tests in any subfolder."""

import os

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)

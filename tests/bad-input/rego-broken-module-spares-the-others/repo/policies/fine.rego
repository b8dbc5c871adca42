package gitward.fine

import rego.v1

violations contains "never" if false

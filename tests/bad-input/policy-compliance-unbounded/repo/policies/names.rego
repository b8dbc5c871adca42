package checks.names

import rego.v1

deny contains "never" if false

package gitward.keys

import rego.v1

deny(bits) := {"weak key"} if bits < 2048

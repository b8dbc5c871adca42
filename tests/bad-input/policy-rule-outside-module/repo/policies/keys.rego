package gitward.keys

import rego.v1

violation contains "weak key" if input.computed.keyBits < 2048

package gitward.helpers

import rego.v1

known contains name if {
	some name in data.gitward.cycle.names
}

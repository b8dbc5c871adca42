package gitward.cycle

import data.gitward.helpers
import rego.v1

names contains name if {
	some name in helpers.known
}

deny contains name if {
	some name in names
	not startswith(name, "ok")
}

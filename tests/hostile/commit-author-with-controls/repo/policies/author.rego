package gitward.author

import rego.v1

# Echoes the commit's author and trailers into a finding: what the commit says reaches output.
deny contains msg if {
	msg := sprintf("author %s trailers %v", [input.commit.author, input.commit.trailers])
}

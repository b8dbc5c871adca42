package gitward.outbound

import rego.v1

# Fails open where it cannot connect: "no findings" from a rule that never ran.
deny contains "revoked" if {
	response := http.send({"method": "get", "url": sprintf("https://crl.example.com/%s", [input.name])})
	response.body.revoked
}

deny contains "unlucky" if rand.intn(input.name, 10) == 0

deny contains msg if {
	msg := opa.runtime().env.SECRET
}

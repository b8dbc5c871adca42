# Publicly trusted CAs may not certify IP addresses of internal networks (CA/Browser Forum
# Baseline Requirements 7.1.2.7.12): a certificate from a public issuer names no IP address.
package gitward.public_ips

import rego.v1

issuer := data.gitward.inventory.Issuer[input.resource.spec.issuerRef]

publicly_trusted if issuer.spec.acme

publicly_trusted if issuer.metadata.labels.trust == "public"

deny contains finding if {
	publicly_trusted
	some i, address in object.get(input.resource.spec, "ipAddresses", [])
	finding := {
		"msg": sprintf("%s comes from the publicly trusted issuer %s and may not name the IP address %s", [input.name, input.resource.spec.issuerRef, address]),
		"field": sprintf("spec.ipAddresses[%d]", [i]),
	}
}

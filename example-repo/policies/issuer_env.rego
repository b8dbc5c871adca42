# Prod certificates come from prod issuers only: a staging CA's key is handled with less care.
package gitward.issuer_env

import rego.v1

deny contains finding if {
	input.resource.metadata.labels.env == "prod"
	issuer := data.gitward.inventory.Issuer[input.resource.spec.issuerRef]
	issuer_env := object.get(issuer.metadata, ["labels", "env"], "(none)")
	issuer_env != "prod"
	finding := {
		"msg": sprintf("prod certificate %s is issued by %s, whose env is %s", [input.name, input.resource.spec.issuerRef, issuer_env]),
		"field": "spec.issuerRef",
	}
}

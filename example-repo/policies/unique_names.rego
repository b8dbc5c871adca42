# Two certificates for one DNS name means two keys can serve it and nobody is sure which
# one a server uses. input.index.dnsNames lists the certificates claiming each of this
# certificate's names (data.gitward.index.dnsNames has every name; reading only one's own
# entries lets a change be checked again only on the certificates that share its names).
package gitward.unique_names

import rego.v1

deny contains finding if {
	some i, name in object.get(input.resource.spec, "dnsNames", [])
	claimants := input.index.dnsNames[name]
	count(claimants) > 1
	others := [other | some other in claimants; other != input.name]
	finding := {
		"msg": sprintf("%s is also claimed by %s", [name, concat(", ", sort(others))]),
		"field": sprintf("spec.dnsNames[%d]", [i]),
	}
}

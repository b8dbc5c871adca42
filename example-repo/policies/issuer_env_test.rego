package gitward.issuer_env_test

import rego.v1

import data.gitward.issuer_env

issuers := {
	"prod-ca": {"metadata": {"labels": {"env": "prod"}}},
	"staging-ca": {"metadata": {"labels": {"env": "staging"}}},
	"unlabelled-ca": {"metadata": {}},
}

certificate(env, issuer) := {"name": "api", "resource": {"metadata": {"labels": {"env": env}}, "spec": {"issuerRef": issuer}}}

test_prod_from_staging_is_denied if {
	some f in issuer_env.deny with input as certificate("prod", "staging-ca") with data.gitward.inventory.Issuer as issuers
	f.field == "spec.issuerRef"
}

test_prod_from_an_unlabelled_issuer_is_denied if {
	count(issuer_env.deny) == 1 with input as certificate("prod", "unlabelled-ca") with data.gitward.inventory.Issuer as issuers
}

test_prod_from_prod_and_staging_from_anything_pass if {
	count(issuer_env.deny) == 0 with input as certificate("prod", "prod-ca") with data.gitward.inventory.Issuer as issuers
	count(issuer_env.deny) == 0 with input as certificate("staging", "prod-ca") with data.gitward.inventory.Issuer as issuers
}

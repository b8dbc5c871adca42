# A gate override is an exception to the rules: someone must hear of every one. Gates with
# an override notify at least one sink, and every notified sink delivers gate.override events.
package gitward.override_sinks

import rego.v1

override := input.resource.spec.override

deny contains finding if {
	override
	count(object.get(override, "notify", [])) == 0
	finding := {
		"msg": sprintf("gate %s can be overridden but notifies no sink of overrides", [input.name]),
		"field": "spec.override",
	}
}

deny contains finding if {
	some i, name in object.get(override, "notify", [])
	sink := data.gitward.inventory.Sink[name]
	events := object.get(sink.spec, "events", ["gate.override"])
	not "gate.override" in events
	finding := {
		"msg": sprintf("sink %s is told of overrides of gate %s but does not deliver gate.override events", [name, input.name]),
		"field": sprintf("spec.override.notify[%d]", [i]),
	}
}

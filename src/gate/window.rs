//! Change windows: when a gate lets changes through, in the gate's time zone.

//! The eBPF node agent. Built in the node-agent issue; it consumes the egress rules of `hubguard-policy`.

//! Hosts no outbound request may reach unless private addresses are allowed, shared by the unit
//! tests of every outbound purpose (`src/outbound.rs`) and the integration tests: loopback in every
//! notation a URL can write it, IPv6 forms that carry an internal IPv4 address, private, CGNAT and
//! link-local ranges, cloud metadata addresses, and a name that resolves to loopback.

/// Internal hosts, as they go between `http://` and the port or path.
pub const INTERNAL_HOSTS: &[&str] = &[
    "127.0.0.1",
    "127.1",
    "127.0.0.1.",
    "2130706433",
    "0x7f000001",
    "0x7f.0.0.1",
    "0177.0.0.1",
    "017700000001",
    "[::1]",
    "[::]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::127.0.0.1]",
    "[::ffff:0:127.0.0.1]",
    "[64:ff9b::7f00:1]",
    "[64:ff9b::127.0.0.1]",
    "[64:ff9b:1::a00:1]",
    "[2002:7f00:1::]",
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
    "0.0.0.0",
    "0",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "[::ffff:169.254.169.254]",
    "[fd00:ec2::254]",
    "[fe80::1]",
    "[fc00::1]",
    "localhost",
];

/// Public IP literals, which pass (names are only checked when they resolve).
pub const PUBLIC_HOSTS: &[&str] = &["8.8.8.8", "1.1.1.1", "[2606:4700::1111]", "[64:ff9b::808:808]", "172.32.0.1"];

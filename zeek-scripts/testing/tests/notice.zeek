# A detection of each kind becomes one notice of the mapped type, with the
# identifier the script builds; a second identical detection is suppressed.
# @TEST-EXEC: zeek -b $PACKAGE %INPUT
# @TEST-EXEC: zeek-cut note msg sub src dst suppress_for < notice.log > notice.out
# @TEST-EXEC: btest-diff notice.out

event zeek_init()
	{
	local none: vector of addr = vector();
	event Tunnelhound::detection(1, "a1", network_time(), "port_scan",
	    "port_scan_vertical", "0b8d2a4e", 73, "Port scan",
	    "10.77.1.68 sent to 212 unanswered ports", 10.77.1.68, vector(
	    198.18.5.10), "1:abc");
	event Tunnelhound::detection(1, "a2", network_time(), "dns_tunnel",
	    "dns_tunnel_volume", "11111111", 47, "DNS tunnel", "long queries",
	    10.77.1.5, none, "");
	event Tunnelhound::detection(1, "a3", network_time(), "threat_index",
	    "threat_index_high", "22222222", 99, "Threat index", "score 0.97",
	    10.77.1.9, none, "");
	# Same rule, source and destination as a1: suppressed.
	event Tunnelhound::detection(1, "a4", network_time(), "port_scan",
	    "port_scan_vertical", "0b8d2a4e", 73, "Port scan",
	    "10.77.1.68 sent to 300 unanswered ports", 10.77.1.68, vector(
	    198.18.5.10), "1:abc");
	# Wrong version: ignored with a warning.
	event Tunnelhound::detection(2, "a5", network_time(), "beacon",
	    "beacon_regular", "33333333", 73, "Beacon", "every 60 s", 10.77.1.7,
	    none, "");
	}

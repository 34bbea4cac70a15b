##! Tunnelhound: publish every finished connection to the Tunnelhound sidecar
##! and raise a notice for each detection the sidecar sends back.
##!
##! Both directions use flat, versioned events (never Zeek's ``connection``
##! record, whose fields change between Zeek versions). The sidecar declares
##! the same events in ``tunnelhound/zeek/events.py``; a test keeps the two in
##! step.

@load base/frameworks/broker
@load base/frameworks/cluster
@load base/frameworks/notice
@load base/misc/version
@load base/protocols/conn
# Adds community_id to Conn::Info (ships with Zeek 6 and later).
@load policy/protocols/conn/community-id-logging

module Tunnelhound;

export {
	redef enum Notice::Type += {
		## A tunnel inside an application protocol (e.g. HTTP, TLS).
		App_Tunnel,
		## Data tunnelled through DNS queries and answers.
		DNS_Tunnel,
		## Data tunnelled through ICMP payloads.
		ICMP_Tunnel,
		## Many unanswered ports or hosts probed.
		Port_Scan,
		## Unusually large or repeated outbound transfers.
		Exfiltration,
		## Regular, periodic connections to one destination.
		Beacon,
		## Any other detection (threat index, users' own rules).
		Detection,
	};

	## Version of the event layouts below; bumped when an argument changes.
	const event_version = 1;

	## Topic the connection events are published on.
	const conn_topic = "tunnelhound/conn" &redef;

	## Topic the sidecar publishes its detections on.
	const detection_topic = "tunnelhound/detections" &redef;

	## Whether finished connections are published at all.
	option export_conns = T;

	## How long a notice with the same identifier is suppressed.
	option suppress_for = 1hr;

	## Notice type per detector (the alert's event.action); others map to
	## Tunnelhound::Detection.
	option notice_types: table[string] of Notice::Type = {
		["app_tunnel"] = App_Tunnel,
		["dns_tunnel"] = DNS_Tunnel,
		["icmp_tunnel"] = ICMP_Tunnel,
		["port_scan"] = Port_Scan,
		["exfiltration"] = Exfiltration,
		["beacon"] = Beacon,
	};

	## One finished connection, published on conn_topic. Byte counts are
	## payload bytes (orig_bytes) and IP bytes (orig_ip_bytes) as in conn.log;
	## absent optional fields are sent as "", 0, 0sec or F.
	global conn: event(version: count, uid: string, ts: time, orig_h: addr,
	    orig_p: port, resp_h: addr, resp_p: port, proto: transport_proto,
	    service: string, duration: interval, orig_bytes: count,
	    resp_bytes: count, orig_ip_bytes: count, resp_ip_bytes: count,
	    orig_pkts: count, resp_pkts: count, conn_state: string,
	    history: string, local_orig: bool, local_resp: bool,
	    community_id: string);

	## One detection from the sidecar, received on detection_topic. ``dst``
	## holds zero or one address (a scan across hosts has no destination).
	global detection: event(version: count, alert_id: string, ts: time,
	    action: string, rule_name: string, rule_id: string, severity: count,
	    message: string, reason: string, src: addr, dst: vector of addr,
	    community_id: string);

	## The notice type a detection becomes.
	global notice_type: function(action: string): Notice::Type;
}

function notice_type(action: string): Notice::Type
	{
	return action in notice_types ? notice_types[action] : Detection;
	}

event zeek_init()
	{
@if ( Version::at_least("7.1.0") )
	Cluster::subscribe(detection_topic);
@else
	Broker::subscribe(detection_topic);
@endif
	}

event Conn::log_conn(rec: Conn::Info)
	{
	if ( ! export_conns )
		return;

	local e = Broker::make_event(conn, event_version, rec$uid, rec$ts,
	    rec$id$orig_h, rec$id$orig_p, rec$id$resp_h, rec$id$resp_p,
	    rec$proto, rec?$service ? rec$service : "", rec?$duration ?
	    rec$duration : 0sec, rec?$orig_bytes ? rec$orig_bytes : 0,
	    rec?$resp_bytes ? rec$resp_bytes : 0, rec?$orig_ip_bytes ?
	    rec$orig_ip_bytes : 0, rec?$resp_ip_bytes ? rec$resp_ip_bytes : 0,
	    rec?$orig_pkts ? rec$orig_pkts : 0, rec?$resp_pkts ? rec$resp_pkts : 0,
	    rec?$conn_state ? rec$conn_state : "", rec?$history ? rec$history : "",
	    rec?$local_orig ? rec$local_orig : F, rec?$local_resp ?
	    rec$local_resp : F, rec?$community_id ? rec$community_id : "");
	Broker::publish(conn_topic, e);
	}

event detection(version: count, alert_id: string, ts: time, action: string,
    rule_name: string, rule_id: string, severity: count, message: string,
    reason: string, src: addr, dst: vector of addr, community_id: string)
	{
	if ( version != event_version )
		{
		Reporter::warning(fmt("Tunnelhound::detection version %d, expected %d",
		    version, event_version));
		return;
		}

	local n = Notice::Info($note=notice_type(action), $msg=fmt("%s (%s)", message,
	    rule_name), $sub=reason, $src=src, $identifier=cat(rule_name, src,
	    |dst| > 0 ? cat(dst[0]) : ""), $suppress_for=suppress_for);
	if ( |dst| > 0 )
		n$dst = dst[0];
	NOTICE(n);
	}

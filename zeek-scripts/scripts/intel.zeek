##! Optional: put the source host of every detection into the Intel framework,
##! so later traffic of that host is reported in intel.log as well.

@load base/frameworks/intel
@load ./main

module Tunnelhound;

export {
	## Whether detections insert their source address as an Intel item.
	option insert_intel = F;
}

event detection(version: count, alert_id: string, ts: time, action: string,
    rule_name: string, rule_id: string, severity: count, message: string,
    reason: string, src: addr, dst: vector of addr, community_id: string)
	{
	if ( ! insert_intel || version != event_version )
		return;

	Intel::insert([$indicator=cat(src), $indicator_type=Intel::ADDR, $meta=[
	    $source="tunnelhound", $desc=fmt("%s: %s", rule_name, message)]]);
	}

# With insert_intel, a detection's source address becomes an Intel item.
# @TEST-EXEC: zeek -b $PACKAGE %INPUT > output
# @TEST-EXEC: btest-diff output

redef Tunnelhound::insert_intel = T;

event zeek_init()
	{
	local none: vector of addr = vector();
	event Tunnelhound::detection(1, "a1", network_time(), "exfiltration",
	    "exfiltration_repeat", "44444444", 73, "Exfiltration", "2 GB out",
	    10.77.1.21, none, "");
	}

event zeek_done()
	{
	print Intel::find(Intel::Seen($host=10.77.1.21, $where=Intel::IN_ANYWHERE));
	print Intel::find(Intel::Seen($host=10.77.1.22, $where=Intel::IN_ANYWHERE));
	}

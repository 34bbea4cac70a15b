##! Optional: let this standalone Zeek accept the sidecar's WebSocket client.
##! zeekctl clusters from Zeek 8.1 run a WebSocket listener of their own.
##! The WebSocket API has no authentication: keep the default loopback
##! address, or put TLS and a firewall in front of it.

@load base/misc/version
@load ./main

module Tunnelhound;

export {
	## Whether zeek_init starts a WebSocket listener.
	const listen_websocket = F &redef;

	## Address the listener binds to.
	const websocket_addr = 127.0.0.1 &redef;

	## Port the listener binds to (Zeek's default WebSocket port).
	const websocket_port = 27759/tcp &redef;
}

event zeek_init()
	{
	if ( ! listen_websocket )
		return;

@if ( Version::at_least("8.0.0") )
	Cluster::listen_websocket([$listen_addr=websocket_addr,
	    $listen_port=websocket_port]);
@else
	Broker::listen_websocket(cat(websocket_addr), websocket_port);
@endif
	}

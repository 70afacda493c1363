//! SSDP (UPnP Device Architecture 1.1 §1): NOTIFY ssdp:alive, M-SEARCH and its unicast
//! response; and the WS-Discovery Hello (SOAP-over-UDP, port 3702) a camera sends at boot.

/// `NOTIFY * HTTP/1.1` ssdp:alive for one notification type.
pub fn notify(location: &str, nt: &str, uuid: &str, server: &str, max_age: u32) -> Vec<u8> {
    let usn = if nt == format!("uuid:{uuid}") {
        nt.to_string()
    } else {
        format!("uuid:{uuid}::{nt}")
    };
    format!(
        "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age={max_age}\r\n\
LOCATION: {location}\r\nNT: {nt}\r\nNTS: ssdp:alive\r\nSERVER: {server}\r\nUSN: {usn}\r\n\
BOOTID.UPNP.ORG: 1\r\nCONFIGID.UPNP.ORG: 1\r\n\r\n"
    )
    .into_bytes()
}

/// `M-SEARCH * HTTP/1.1` for `st` with MX seconds.
pub fn msearch(st: &str, mx: u8) -> Vec<u8> {
    format!("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: {mx}\r\nST: {st}\r\n\r\n")
        .into_bytes()
}

/// The unicast `HTTP/1.1 200 OK` answer to an M-SEARCH.
pub fn search_response(
    location: &str,
    st: &str,
    uuid: &str,
    server: &str,
    max_age: u32,
    date: &str,
) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age={max_age}\r\nDATE: {date}\r\nEXT:\r\n\
LOCATION: {location}\r\nSERVER: {server}\r\nST: {st}\r\nUSN: uuid:{uuid}::{st}\r\n\r\n"
    )
    .into_bytes()
}

/// WS-Discovery Hello for an ONVIF network video transmitter (~700 bytes).
pub fn wsd_hello(uuid: &str, msg_id: &str, xaddr: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://www.w3.org/2003/05/soap-envelope\" \
xmlns:wsa=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" \
xmlns:wsd=\"http://schemas.xmlsoap.org/ws/2005/04/discovery\" \
xmlns:dn=\"http://www.onvif.org/ver10/network/wsdl\">\
<SOAP-ENV:Header><wsa:MessageID>urn:uuid:{msg_id}</wsa:MessageID>\
<wsa:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>\
<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Hello</wsa:Action>\
<wsd:AppSequence InstanceId=\"1\" MessageNumber=\"1\"/></SOAP-ENV:Header>\
<SOAP-ENV:Body><wsd:Hello><wsa:EndpointReference><wsa:Address>urn:uuid:{uuid}</wsa:Address>\
</wsa:EndpointReference><wsd:Types>dn:NetworkVideoTransmitter</wsd:Types>\
<wsd:Scopes>onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/hardware/IPC</wsd:Scopes>\
<wsd:XAddrs>{xaddr}</wsd:XAddrs><wsd:MetadataVersion>1</wsd:MetadataVersion></wsd:Hello>\
</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_fields() {
        let n = String::from_utf8(notify("http://h/d.xml", "upnp:rootdevice", "u1", "S", 1800))
            .unwrap_or_default();
        assert!(n.starts_with("NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"));
        assert!(n.contains("CACHE-CONTROL: max-age=1800\r\n"));
        assert!(n.contains("USN: uuid:u1::upnp:rootdevice\r\n"));
        assert!(n.ends_with("\r\n\r\n"));
    }

    #[test]
    fn msearch_size() {
        let m = msearch("ssdp:all", 2);
        assert!((90..130).contains(&m.len()));
    }

    #[test]
    fn hello_size() {
        let h = wsd_hello("a", "b", "http://192.168.10.21/onvif/device_service");
        assert!((600..1400).contains(&h.len()));
    }
}

HEAD = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'
FROM = '"sipp" <sip:+15551230001@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]'
def sdp(pts, attrs):
    lines = ["v=0", "o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]", "s=-",
             "c=IN IP[media_ip_type] [media_ip]", "t=0 0", f"m=audio [rtp_listen] RTP/AVP {pts}",
             "a=rtpmap:0 PCMU/8000"] + attrs + ["a=ptime:20", "a=sendrecv"]
    return "\n".join("      " + l for l in lines)
def invite_req(pts, attrs, cseq=1, to_tag=False, uri="sip:[service]@[remote_ip]:[remote_port]", branch="[branch]"):
    to = "<sip:[service]@[remote_ip]:[remote_port]>" + ("[peer_tag_param]" if to_tag else "")
    return f"""  <send retrans="500">
    <![CDATA[
      INVITE {uri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch}
      From: {FROM}
      To: {to}
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

{sdp(pts, attrs)}
    ]]>
  </send>
"""
def ack(cseq=1, uri="[next_url]"):
    return f"""  <send>
    <![CDATA[
      ACK {uri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {FROM}
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""
def call(pts, attrs):
    return invite_req(pts, attrs) + """  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
""" + ack()
def in_dialog(method, cseq, ctype=None, body=None):
    b = ""
    if body is not None:
        b = f"      Content-Type: {ctype}\n      Content-Length: [len]\n\n" + "\n".join("      " + l for l in body.split("\n"))
    else:
        b = "      Content-Length: 0"
    return f"""  <send retrans="500">
    <![CDATA[
      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {FROM}
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
{b}
    ]]>
  </send>
  <recv response="200"/>
"""
OK_TO_BYE = """  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
"""
# A flow that reaches a `transfer` step REFERs the caller first: these
# callers are no transferees, so they decline (603) and wait for the BYE
# that ends the call either way.
DECLINE_REFER = """  <send>
    <![CDATA[
      SIP/2.0 603 Decline
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
"""
RECV_BYE = ("""  <recv request="REFER" optional="true" next="refer_declined"/>
  <recv request="BYE"/>
""" + OK_TO_BYE + """  <nop next="bye_answered"/>
  <label id="refer_declined"/>
""" + DECLINE_REFER + """  <recv request="BYE"/>
""" + OK_TO_BYE + """  <label id="bye_answered"/>
""")
TE_BOTH = ["a=rtpmap:96 telephone-event/8000", "a=fmtp:96 0-15", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"]
TE101 = ["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"]
TE96 = ["a=rtpmap:96 telephone-event/8000", "a=fmtp:96 0-15"]
def pause(ms): return f'  <pause milliseconds="{ms}"/>\n'
def exec_(a): return f'  <nop><action><exec {a}/></action></nop>\n'
def write(name, comment, body):
    open(name, "w").write(HEAD + f"<!-- {comment} -->\n<scenario name=\"voxgate {name[:-4]}\">\n" + body + "</scenario>\n")

write("dtmf_play.xml", "Calls, keys [dtmf] with sipp's play_dtmf (RFC 4733 on PT 96), expects voxgate's BYE.",
      call("0 96 101", TE_BOTH) + pause(1200) + exec_('play_dtmf="[dtmf]"') + RECV_BYE)
write("dtmf_pcap.xml", "Keys 1, 2, # by replaying sipp's shipped RFC 4733 captures (PT 101).",
      call("0 96 101", TE_BOTH) + pause(1200)
      + exec_('play_pcap_audio="/usr/share/sip-tester/dtmf_2833_1.pcap"') + pause(700)
      + exec_('play_pcap_audio="/usr/share/sip-tester/dtmf_2833_2.pcap"') + pause(700)
      + exec_('play_pcap_audio="/usr/share/sip-tester/dtmf_2833_pound.pcap"') + RECV_BYE)
write("dtmf_info.xml", "Keys 7 (application/dtmf-relay), 8 (application/dtmf), # (dtmf-relay) by SIP INFO.",
      call("0 101", TE101) + pause(1200)
      + in_dialog("INFO", 2, "application/dtmf-relay", "Signal=7\nDuration=160") + pause(300)
      + in_dialog("INFO", 3, "application/dtmf", "8") + pause(300)
      + in_dialog("INFO", 4, "application/dtmf-relay", "Signal=#\nDuration=160") + RECV_BYE)
write("dtmf_inband.xml", "Streams a u-law file of DTMF tones (made with sox) as PCMU audio: in-band digits.",
      call("0", []) + pause(1000) + exec_('rtp_stream="tones.ulaw,1,0"') + RECV_BYE)
LATE_INVITE = """  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: """ + FROM + """
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
"""
LATE_ACK = """  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: """ + FROM + """
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

""" + sdp("0 101", TE101) + """
    ]]>
  </send>
"""
write("late_offer.xml", "INVITE without SDP (late offer): voxgate offers in the 200, sipp answers in the ACK, then keys 1, 2, # from the shipped RFC 4733 captures (PT 101).",
      LATE_INVITE + LATE_ACK + pause(1200)
      + exec_('play_pcap_audio="/usr/share/sip-tester/dtmf_2833_1.pcap"') + pause(700)
      + exec_('play_pcap_audio="/usr/share/sip-tester/dtmf_2833_2.pcap"') + pause(700)
      + exec_('play_pcap_audio="/usr/share/sip-tester/dtmf_2833_pound.pcap"') + RECV_BYE)
write("speech.xml", "Speaks an account number while it is asked for (speech barge-in), later says yes; both as PCMU audio files made with sox from flows/callers.",
      call("0", []) + pause(3500) + exec_('rtp_stream="number.ulaw,1,0"')
      + pause(8000) + exec_('rtp_stream="answer.ulaw,1,0"') + RECV_BYE)
write("speech_bargein.xml", "Says a number, then talks for a long while from when the number is read back (speech barge-in on a say step) until voxgate hangs up.",
      call("0", []) + pause(3500) + exec_('rtp_stream="number.ulaw,1,0"')
      + pause(4500) + exec_('rtp_stream="talk.ulaw,1,0"') + RECV_BYE)
write("reinvite_pt.xml", "Digit 1 on telephone-event PT 101, then a re-INVITE moves telephone-event to PT 96 and play_dtmf keys 2# on PT 96.",
      call("0 101", TE101) + pause(1200)
      + exec_('play_pcap_audio="/usr/share/sip-tester/dtmf_2833_1.pcap"') + pause(800)
      + invite_req("0 96", TE96, cseq=2, to_tag=True, uri="[next_url]")
      + '  <recv response="100" optional="true"/>\n  <recv response="200"/>\n' + ack(cseq=2)
      + pause(300) + exec_('play_dtmf="2#"') + RECV_BYE)
write("caller_bye.xml", "Answers, listens 1.5 s, then the caller hangs up.",
      call("0 101", TE101) + pause(1500) + in_dialog("BYE", 3))
write("cancel.xml", "INVITE, 180 Ringing, CANCEL: expects 200 for CANCEL and 487 for INVITE, then ACKs.",
      invite_req("0", []) + '  <recv response="100" optional="true"/>\n  <recv response="180"/>\n' + f"""  <send>
    <![CDATA[
      CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
      From: {FROM}
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-6]
      From: {FROM}
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
""")
write("not_found.xml", "INVITE to a number no flow serves: expects 404, then ACKs.",
      invite_req("0", []) + '  <recv response="100" optional="true"/>\n  <recv response="404"/>\n' + ack(uri="sip:[service]@[remote_ip]:[remote_port]"))
write("silent.xml", "Answers and stays silent (no RTP, no digits) until voxgate hangs up.",
      call("0 101", TE101) + RECV_BYE)
write("long_call.xml", "Answers, stays 4 s, then hangs up (a call in progress during shutdown).",
      call("0 101", TE101) + pause(4000) + in_dialog("BYE", 3))
write("refused_503.xml", "INVITE while voxgate drains for shutdown: expects 503, then ACKs.",
      invite_req("0", []) + '  <recv response="100" optional="true"/>\n  <recv response="503"/>\n' + ack(uri="sip:[service]@[remote_ip]:[remote_port]"))

"""TRex ASTF profile: HTTP connections per second through the l4lbd VIP.

  start -f astf_http_cps.py -m 100000 -t vip=172.16.12.100   # -m: connections/s

TRex plays both sides: clients (198.18.0.0/15) on port 0 connect to VIP:80; l4lbd DNATs
each SYN to a backend in 10.4.1.0/24 and TRex's server side, on port 1, answers as
every backend at once (the server IP range covers the backends; TRex's server port
listens on the targetPort, 8080). One small GET, one small response, close: every
connection is a new l4lbd flow plus its replies (reverse NAT). Measure CPS at which
connections start failing (l4lbd full or dropping) with `-m` steps or the ASTF NDR
search. Not run against TRex here: checked only with `python3 -m py_compile`.
"""
from trex.astf.api import (ASTFProfile, ASTFIPGen, ASTFIPGenDist, ASTFIPGenGlobal,
                           ASTFProgram, ASTFAssociationRule, ASTFTCPClientTemplate,
                           ASTFTCPServerTemplate, ASTFGlobalInfo, ASTFTemplate)

HTTP_REQ = (b"GET /bench HTTP/1.1\r\nHost: l4lb\r\nUser-Agent: trex\r\n"
            b"Accept: */*\r\n\r\n")
HTTP_RESP = (b"HTTP/1.1 200 OK\r\nServer: trex\r\nContent-Type: text/plain\r\n"
             b"Content-Length: 32\r\nConnection: close\r\n\r\n" + b"x" * 32)


class HttpCps:
    def get_profile(self, tunables=None, vip="172.16.12.100", vport=80, target_port=8080,
                    **kwargs):
        vip, vport, target_port = str(vip), int(vport), int(target_port)
        client = ASTFProgram()
        client.connect()
        client.send(HTTP_REQ)
        client.recv(len(HTTP_RESP))

        server = ASTFProgram()
        server.recv(len(HTTP_REQ))
        server.send(HTTP_RESP)

        # Clients behind l4lbd's wan; destination is the VIP (l4lbd's job to DNAT).
        ip_gen = ASTFIPGen(glob=ASTFIPGenGlobal(ip_offset="0.0.0.1"),
                           dist_client=ASTFIPGenDist(ip_range=["198.18.0.1", "198.19.255.254"],
                                                     distribution="seq"),
                           dist_server=ASTFIPGenDist(ip_range=[vip, vip], distribution="seq"))
        c_temp = ASTFTCPClientTemplate(program=client, ip_gen=ip_gen, port=vport, cps=1)
        # The server side accepts for any backend address on the target port.
        s_temp = ASTFTCPServerTemplate(program=server,
                                       assoc=ASTFAssociationRule(port=target_port))
        glob = ASTFGlobalInfo()
        glob.tcp.mss = 1400
        template = ASTFTemplate(client_template=c_temp, server_template=s_temp)
        return ASTFProfile(default_ip_gen=ip_gen, default_c_glob_info=glob,
                           default_s_glob_info=glob, templates=template)


def register():
    return HttpCps()

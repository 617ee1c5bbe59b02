#!/usr/bin/env python3
"""cuda/ops.cu -> host C++ for the GPU emulation: every `k<<<grid, block, shm, stream>>>(args);`
becomes `emu_launch(grid, block, [&]{ k(args); }, concurrent);`. Kernels that synchronise
threads (__syncthreads, warp shuffles) are launched with concurrent threads."""
import re
import sys

src = open(sys.argv[1]).read()
# kernels whose threads must run at the same time: they contain __syncthreads or __shfl
bodies = re.findall(r'__global__ void (\w+)\((.*?)\n}', src, flags=re.S)
concurrent = {name for name, body in bodies if "__syncthreads" in body or "__shfl" in body}


def launch(m):
    name, cfg, args = m.group(1), m.group(2), m.group(3)
    parts = [p.strip() for p in re.split(r',(?![^()]*\))', cfg)]
    conc = "true" if name.split("<")[0] in concurrent else "false"
    return "emu_launch(%s, %s, [&]{ %s(%s); }, %s);" % (parts[0], parts[1], name, args, conc)


out = re.sub(r'(\w+(?:<\w+>)?)<<<(.*?)>>>\((.*?)\);', launch, src, flags=re.S)
if "<<<" in out:
    sys.exit("kernels_to_host.py: a launch was not converted")
sys.stdout.write('#include "emu.h"\n#line 1 "%s"\n' % sys.argv[1] + out)

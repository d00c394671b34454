<#
.SYNOPSIS
    Exercises the IOCP socket reuse path on real Windows and prints its counters.

.DESCRIPTION
    Wine completes none of the DisconnectEx(TF_REUSE_SOCKET) calls the engine makes, so under Wine the reuse pools
    stay empty (docs/WINDOWS.md). This script is the check a Windows user (or the CI workflow) runs instead:

      1. starts overlap-echo.exe (--idle-timeout 1) and overlap-proxy.exe in front of it, each with --metrics;
      2. churns short connections through the proxy with overlap-load.exe --churn: the clients close first, so
         the accepted sockets of both programs are retired and go back to AcceptEx (reuse_ok);
      3. opens rounds of connections through the proxy that go silent until overlap-echo's idle timeout closes
         them: the echo server closes first, so the proxy's upstream (ConnectEx) sockets are retired and reused
         by the next round's ConnectEx;
      4. times a connect to a closed loopback port through a second proxy (issue 16 item 7: milliseconds on
         Windows 10 1709 and later, about 2 s without SIO_TCP_INITIAL_RTO);
      5. reads /metrics of both programs and prints reuse_ok, reuse_fallback, reuse_timeouts, reuse_wrong_role
         and errors, with the load client's own socket_reuse figures;
      6. restarts overlap-echo.exe on its port while the connections it closed first sit in TIME_WAIT
         (issue 16 item 9: the listener sets no SO_EXCLUSIVEADDRUSE, so the bind must succeed).

    It exits 1 if reuse_wrong_role > 0, if any error was counted (the servers' errors, the load client's), or if
    the restart could not bind; 0 otherwise. Every process it started is stopped by its process id at the end.
    Traffic stays on 127.0.0.1; every run is bounded by -Duration and the timeouts below.

.PARAMETER BuildDir
    The meson build directory holding overlap-echo.exe, bench\overlap-load.exe and examples\overlap-proxy.exe.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File scripts\windows-check.ps1 -BuildDir build
#>
param(
    [Parameter(Mandatory = $true)][string]$BuildDir,
    [ValidateRange(1, 1000)][int]$Connections = 20,
    [ValidateRange(1, 1000)][int]$Churn = 5,
    [ValidateRange(1, 60)][int]$Duration = 5,
    [ValidateRange(1, 20)][int]$Rounds = 3,
    [ValidateRange(1, 200)][int]$RoundConnections = 20
)

Set-StrictMode -Version 3
$ErrorActionPreference = 'Stop'

$echoExe = Join-Path $BuildDir 'overlap-echo.exe'
$loadExe = Join-Path $BuildDir 'bench\overlap-load.exe'
$proxyExe = Join-Path $BuildDir 'examples\overlap-proxy.exe'
foreach ($exe in @($echoExe, $loadExe, $proxyExe)) {
    if (-not (Test-Path -LiteralPath $exe)) { throw "windows-check: $exe is missing: build first (see docs/WINDOWS.md)" }
}

$work = Join-Path ([System.IO.Path]::GetTempPath()) ("overlap-check-" + [guid]::NewGuid().ToString('N'))
New-Item -ItemType Directory -Path $work | Out-Null
$started = New-Object System.Collections.Generic.List[object]

# Start a program with its output in files under $work; returns the process with .OutFile and .ErrFile noted.
function Start-Program([string]$name, [string]$exe, [string[]]$arguments) {
    $out = Join-Path $work "$name.out"
    $err = Join-Path $work "$name.err"
    $process = Start-Process -FilePath $exe -ArgumentList $arguments -NoNewWindow -PassThru `
        -RedirectStandardOutput $out -RedirectStandardError $err
    $started.Add($process)
    $process | Add-Member -NotePropertyName OutFile -NotePropertyValue $out
    $process | Add-Member -NotePropertyName ErrFile -NotePropertyValue $err
    $process | Add-Member -NotePropertyName Label -NotePropertyValue $name
    return $process
}

# The first match of $pattern in the program's output within $seconds; its first group as an int.
function Wait-Output($process, [string]$pattern, [int]$seconds = 30) {
    $deadline = (Get-Date).AddSeconds($seconds)
    while ((Get-Date) -lt $deadline) {
        if (Test-Path -LiteralPath $process.OutFile) {
            $text = Get-Content -LiteralPath $process.OutFile -Raw -ErrorAction SilentlyContinue
            if ($text -and $text -match $pattern) { return [int]$Matches[1] }
        }
        if ($process.HasExited) { break }
        Start-Sleep -Milliseconds 100
    }
    $errText = ''
    if (Test-Path -LiteralPath $process.ErrFile) { $errText = Get-Content -LiteralPath $process.ErrFile -Raw }
    throw "windows-check: $($process.Label) printed nothing matching '$pattern' within $seconds s; stderr: $errText"
}

# /metrics of a program as a hashtable: overlap_NAME_total VALUE -> NAME = VALUE.
function Get-Counters([int]$port) {
    $response = Invoke-WebRequest -UseBasicParsing -TimeoutSec 20 -Uri "http://127.0.0.1:$port/metrics"
    $counters = @{}
    foreach ($line in ($response.Content -split "`n")) {
        if ($line -match '^overlap_(\w+?)(?:_total)? (\d+)\s*$') { $counters[$Matches[1]] = [long]$Matches[2] }
    }
    return $counters
}

# One round of connections through the proxy that say one thing, get it back, and stay silent until the server's
# idle timeout closes them (the server's FIN first). Returns how many saw the echo and then EOF.
function Invoke-SilentRound([int]$port, [int]$count) {
    $clients = @()
    for ($i = 0; $i -lt $count; $i++) {
        $client = New-Object System.Net.Sockets.TcpClient
        $client.Connect('127.0.0.1', $port)
        $client.ReceiveTimeout = 10000
        $stream = $client.GetStream()
        $stream.Write([byte[]](1, 2, 3, 4), 0, 4)
        $clients += $client
    }
    $ok = 0
    foreach ($client in $clients) {
        $stream = $client.GetStream()
        $buffer = New-Object byte[] 16
        $got = 0
        try {
            while ($got -lt 4) {
                $n = $stream.Read($buffer, $got, 4 - $got)
                if ($n -le 0) { break }
                $got += $n
            }
            if ($got -eq 4 -and $stream.Read($buffer, 0, 16) -eq 0) { $ok++ }
        } catch {
            Write-Host "  silent round: $($_.Exception.Message)"
        }
        $client.Close()
    }
    return $ok
}

# Sockets on local port $port in TIME_WAIT.
function Get-TimeWaitCount([int]$port) {
    $rows = @(Get-NetTCPConnection -LocalPort $port -State TimeWait -ErrorAction SilentlyContinue)
    return $rows.Count
}

$failed = @()
try {
    $echo = Start-Program 'echo' $echoExe @('--host', '127.0.0.1', '--port', '0', '--threads', '2',
        '--idle-timeout', '1', '--metrics', '127.0.0.1:0')
    $echoPort = Wait-Output $echo 'listening on 127\.0\.0\.1:(\d+)'
    $echoMetrics = Wait-Output $echo 'metrics on http://127\.0\.0\.1:(\d+)'
    $proxy = Start-Program 'proxy' $proxyExe @('--listen', '0', '--host', '127.0.0.1', '--to', "127.0.0.1:$echoPort",
        '--threads', '2', '--metrics', '127.0.0.1:0')
    $proxyPort = Wait-Output $proxy 'listening on 127\.0\.0\.1:(\d+)'
    $proxyMetrics = Wait-Output $proxy 'metrics on http://127\.0\.0\.1:(\d+)'
    Write-Host "overlap-echo.exe on $echoPort (metrics $echoMetrics), overlap-proxy.exe on $proxyPort (metrics $proxyMetrics)"

    # 2. AcceptEx reuse: overlap-load closes first.
    $loadOut = & $loadExe 127.0.0.1 --port $proxyPort --connections $Connections --churn $Churn --duration $Duration `
        --warmup 0 --json
    if ($LASTEXITCODE -ne 0) { $failed += "overlap-load exited $LASTEXITCODE" }
    $load = ($loadOut -join "`n") | ConvertFrom-Json
    Write-Host (("overlap-load --churn {0}: {1} connects, {2} messages, errors {3}; its sockets: reused {4}, " +
        "fallback {5}") -f $Churn, $load.connects, $load.msgs, $load.errors.total, $load.socket_reuse.reused,
        $load.socket_reuse.fallback)
    if ($load.errors.total -gt 0) { $failed += "overlap-load counted $($load.errors.total) errors" }

    # 3. ConnectEx reuse: the echo server closes first (idle timeout), so the proxy's upstream sockets retire.
    for ($round = 1; $round -le $Rounds; $round++) {
        $ok = Invoke-SilentRound $proxyPort $RoundConnections
        Write-Host "silent round ${round}: $ok of $RoundConnections echoed, then closed by the server"
        if ($ok -ne $RoundConnections) { $failed += "silent round ${round}: $ok of $RoundConnections" }
        Start-Sleep -Milliseconds 500   # let the retired sockets' DisconnectEx complete before the next round
    }

    # 4. A refused loopback connect through a proxy pointed at a closed port.
    $holder = New-Object System.Net.Sockets.TcpListener ([System.Net.IPAddress]::Loopback, 0)
    $holder.Start(); $closedPort = $holder.LocalEndpoint.Port; $holder.Stop()
    $refusing = Start-Program 'proxy-refused' $proxyExe @('--listen', '0', '--host', '127.0.0.1',
        '--to', "127.0.0.1:$closedPort", '--threads', '1')
    $refusingPort = Wait-Output $refusing 'listening on 127\.0\.0\.1:(\d+)'
    $client = New-Object System.Net.Sockets.TcpClient
    $client.Connect('127.0.0.1', $refusingPort)
    $client.ReceiveTimeout = 15000
    $watch = [System.Diagnostics.Stopwatch]::StartNew()
    try { [void]$client.GetStream().Read((New-Object byte[] 1), 0, 1) } catch { }
    $watch.Stop()
    $client.Close()
    Write-Host (("refused loopback upstream: the client was closed after {0:N3} s (about 2 s means the SYN was " +
        "retried: SIO_TCP_INITIAL_RTO did not take)") -f $watch.Elapsed.TotalSeconds)

    # 5. The counters.
    foreach ($pair in @(@('overlap-echo', $echoMetrics), @('overlap-proxy', $proxyMetrics))) {
        $c = Get-Counters $pair[1]
        Write-Host (("{0}: reuse_ok {1}, reuse_fallback {2}, reuse_timeouts {3}, reuse_wrong_role {4}, errors {5}, " +
            "context_updates {6}") -f $pair[0], $c['reuse_ok'], $c['reuse_fallback'], $c['reuse_timeouts'],
            $c['reuse_wrong_role'], $c['errors'], $c['context_updates'])
        if ($c['reuse_wrong_role'] -gt 0) { $failed += "$($pair[0]): reuse_wrong_role $($c['reuse_wrong_role'])" }
        if ($c['errors'] -gt 0) { $failed += "$($pair[0]): errors $($c['errors'])" }
    }

    # 6. Restart on the port while the connections overlap-echo closed first are in TIME_WAIT.
    $waiting = Get-TimeWaitCount $echoPort
    Stop-Process -Id $echo.Id -Force
    $echo.WaitForExit(30000) | Out-Null
    $again = Start-Program 'echo-restarted' $echoExe @('--host', '127.0.0.1', '--port', "$echoPort", '--threads', '1')
    try {
        [void](Wait-Output $again 'listening on 127\.0\.0\.1:(\d+)')
        Write-Host "restart on port $echoPort with $waiting sockets in TIME_WAIT: bound"
    } catch {
        $failed += "restart on port $echoPort with $waiting sockets in TIME_WAIT: $($_.Exception.Message)"
    }
    if ($waiting -eq 0) { Write-Host "  (no socket was in TIME_WAIT on the port: the restart proved nothing)" }
} catch {
    $failed += $_.Exception.Message
} finally {
    foreach ($process in $started) {
        if (-not $process.HasExited) { Stop-Process -Id $process.Id -Force -ErrorAction SilentlyContinue }
    }
    Remove-Item -LiteralPath $work -Recurse -Force -ErrorAction SilentlyContinue
}

if ($failed.Count -gt 0) {
    foreach ($reason in $failed) { Write-Host "windows-check: FAILED: $reason" }
    exit 1
}
Write-Host 'windows-check: passed'
exit 0

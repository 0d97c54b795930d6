using System.Buffers.Binary;
using Deid.Faces;
using Microsoft.Win32.SafeHandles;

namespace Deid.Pipeline;

/// <summary>
/// The per-frame records of a run, kept in an anonymous temp file instead of memory: a run of hours has millions of
/// face records, and keeping them on the managed heap made resident memory grow with clip length (the soak bench).
/// Records are appended in a small binary form and read back in order as often as asked (a JSON report, tests).
/// The file is unlinked as soon as it is opened (Unix), so nothing is left in the temp folder however the process ends.
/// Appends come from one writer (the encode stage); reads see everything appended before they began.
/// </summary>
internal sealed class FrameSpool : IDisposable
{
    private const int FlushAt = 64 * 1024;
    private readonly object _gate = new();
    private SafeFileHandle? _file;
    private byte[] _buffer = new byte[FlushAt + 4096];
    private int _buffered;
    private long _written;
    private bool _disposed;

    public long Count { get; private set; }

    public void Add(FrameRecord frame)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var need = 21 + frame.Faces.Count * 60;
            if (_buffered + need > _buffer.Length) Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _buffered + need));
            var s = _buffer.AsSpan(_buffered);
            var n = 0;
            BinaryPrimitives.WriteInt64LittleEndian(s[n..], frame.Index); n += 8;
            BinaryPrimitives.WriteDoubleLittleEndian(s[n..], frame.Time); n += 8;
            BinaryPrimitives.WriteInt32LittleEndian(s[n..], frame.Faces.Count); n += 4;
            s[n++] = frame.Damaged ? (byte)1 : (byte)0;
            foreach (var f in frame.Faces)
            {
                BinaryPrimitives.WriteInt32LittleEndian(s[n..], f.TrackId); n += 4;
                foreach (var v in (ReadOnlySpan<float>)[f.Box.Left, f.Box.Top, f.Box.Right, f.Box.Bottom, f.Box.Score])
                {
                    BinaryPrimitives.WriteSingleLittleEndian(s[n..], v); n += 4;
                }
                s[n++] = (byte)f.Handling;
                if (f.Audit is not { } a) { s[n++] = 0; continue; }
                s[n++] = (byte)(1 | (a.SimilarityToTarget is null ? 0 : 2) | (a.SimilarityAfterRetry is null ? 0 : 4));
                s[n++] = (byte)a.Action;
                BinaryPrimitives.WriteDoubleLittleEndian(s[n..], a.SimilarityToSource); n += 8;
                BinaryPrimitives.WriteDoubleLittleEndian(s[n..], a.SimilarityToTarget ?? 0); n += 8;
                BinaryPrimitives.WriteDoubleLittleEndian(s[n..], a.SimilarityAfterRetry ?? 0); n += 8;
            }
            _buffered += n;
            Count++;
            if (_buffered >= FlushAt) Flush();
        }
    }

    /// <summary>Every record appended so far, in order; safe to enumerate several times, also side by side.</summary>
    public IEnumerable<FrameRecord> Read()
    {
        long end;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            Flush();
            end = _written;
        }
        return end == 0 ? [] : ReadUpTo(end);
    }

    private IEnumerable<FrameRecord> ReadUpTo(long end)
    {
        var chunk = new byte[FlushAt];
        int have = 0, at = 0;
        long offset = 0;
        // Makes at least `count` unread bytes available in `chunk` (growing it for a frame with very many faces).
        void Need(int count)
        {
            if (have - at >= count) return;
            if (count > chunk.Length) Array.Resize(ref chunk, count);
            Buffer.BlockCopy(chunk, at, chunk, 0, have - at);
            have -= at;
            at = 0;
            while (have < count)
            {
                int got;
                lock (_gate)
                {
                    ObjectDisposedException.ThrowIf(_disposed, this);
                    got = RandomAccess.Read(_file!, chunk.AsSpan(have, (int)Math.Min(chunk.Length - have, end - offset)), offset);
                }
                if (got <= 0) throw new InvalidDataException("the report's frame spool ended early");
                have += got;
                offset += got;
            }
        }
        while (offset < end || at < have)
        {
            Need(21);
            var index = BinaryPrimitives.ReadInt64LittleEndian(chunk.AsSpan(at)); at += 8;
            var time = BinaryPrimitives.ReadDoubleLittleEndian(chunk.AsSpan(at)); at += 8;
            var count = BinaryPrimitives.ReadInt32LittleEndian(chunk.AsSpan(at)); at += 4;
            var damaged = chunk[at++] != 0;
            var faces = new FaceRecord[count];
            for (var i = 0; i < count; i++)
            {
                Need(26);
                var track = BinaryPrimitives.ReadInt32LittleEndian(chunk.AsSpan(at)); at += 4;
                var v = new float[5];
                for (var k = 0; k < 5; k++) { v[k] = BinaryPrimitives.ReadSingleLittleEndian(chunk.AsSpan(at)); at += 4; }
                var handling = (FaceHandling)chunk[at++];
                var flags = chunk[at++];
                FaceAudit? audit = null;
                if (flags != 0)
                {
                    Need(25);
                    var action = (AuditAction)chunk[at++];
                    var source = BinaryPrimitives.ReadDoubleLittleEndian(chunk.AsSpan(at)); at += 8;
                    var target = BinaryPrimitives.ReadDoubleLittleEndian(chunk.AsSpan(at)); at += 8;
                    var retry = BinaryPrimitives.ReadDoubleLittleEndian(chunk.AsSpan(at)); at += 8;
                    audit = new FaceAudit(source, (flags & 2) != 0 ? target : null, action, (flags & 4) != 0 ? retry : null);
                }
                faces[i] = new FaceRecord(track, new FaceBox(v[0], v[1], v[2], v[3], v[4]), handling, audit);
            }
            yield return new FrameRecord(index, time, faces, damaged);
        }
    }

    private void Flush()
    {
        if (_buffered == 0) return;
        _file ??= OpenAnonymous();
        RandomAccess.Write(_file, _buffer.AsSpan(0, _buffered), _written);
        _written += _buffered;
        _buffered = 0;
    }

    private static SafeFileHandle OpenAnonymous()
    {
        var path = Path.Combine(Path.GetTempPath(), $"deid-frames-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
        var windows = OperatingSystem.IsWindows();
        var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None,
            windows ? FileOptions.DeleteOnClose : FileOptions.None);
        if (!windows)
        {
            try { File.Delete(path); }
            catch { handle.Dispose(); throw; }
        }
        return handle;
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _file?.Dispose();
            _file = null;
            _buffer = [];
        }
    }
}

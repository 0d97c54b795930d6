namespace Deid.Media;

/// <summary>A problem with an input or output file, described in one line meant for the user.</summary>
public class MediaException : Exception
{
    public MediaException(string message, Exception? inner = null) : base(message, inner) { }
}

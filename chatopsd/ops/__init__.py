"""Operations commands: argument validation, argv templating and the subprocess runner."""

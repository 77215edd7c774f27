from telephony.cli import main

raise SystemExit(main())

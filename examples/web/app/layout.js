import './globals.css';

export const metadata = {
  title: 'recete web',
  description: 'Reference web app for recete.stack',
};

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}
